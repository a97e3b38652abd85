"""Train a diffusion model (DDPM / DDIM sampling, classifier-free guidance).

  python -m experiments.diffusion --workdir=runs/ddpm
  python -m experiments.diffusion --config=experiments/configs/ddpm_mnist.py:test --workdir=/tmp/t
  python -m experiments.diffusion --config=experiments/configs/ddpm_mnist_cond.py --workdir=runs/cfg

Any config field can be overridden with ``--config.<field>=value``. Re-running the
same command resumes from the last checkpoint in ``--workdir``.
"""

from absl import flags
from ml_collections import config_flags

from experiments import launch

_CONFIG = config_flags.DEFINE_config_file("config", launch.config_path("ddpm_mnist.py"),
                                          launch.CONFIG_HELP, lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, launch.WORKDIR_HELP, required=True)

if __name__ == "__main__":
    launch.run(launch.main_for(_CONFIG, _WORKDIR))
