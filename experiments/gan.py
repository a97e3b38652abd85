"""Train a GAN (BCE, LSGAN, WGAN, WGAN-GP, hinge/SNGAN; MLP, conv, DCGAN, SNGAN nets;
minibatch features, unrolling, class conditioning, progressive growing).

  python -m experiments.gan --workdir=runs/gan_mlp      # default config: gan_mlp_mnist
  python -m experiments.gan --config=experiments/configs/dcgan_mnist.py --workdir=runs/dcgan
  python -m experiments.gan --config=experiments/configs/wgan_gp_mnist.py --config.n_critic=3 ...
  python -m experiments.gan --config=experiments/configs/dcgan_cifar10.py --config.dataset=mnist5k ...
  python -m experiments.gan --config=experiments/configs/dcgan_mnist.py --config.unroll_steps=5 ...
  python -m experiments.gan --config=experiments/configs/progan_mnist.py --workdir=runs/progan

Any config field can be overridden with ``--config.<field>=value``. Re-running the
same command resumes from the last checkpoint in ``--workdir``.
"""

from absl import flags
from ml_collections import config_flags

from experiments import launch

_CONFIG = config_flags.DEFINE_config_file("config", launch.config_path("gan_mlp_mnist.py"),
                                          launch.CONFIG_HELP, lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, launch.WORKDIR_HELP, required=True)

if __name__ == "__main__":
    launch.run(launch.main_for(_CONFIG, _WORKDIR))
