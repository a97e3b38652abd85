"""Train a restricted Boltzmann machine or a deep belief net.

  python -m experiments.rbm --workdir=runs/rbm
  python -m experiments.rbm --config=experiments/configs/rbm_pcd_mnist.py:test --workdir=/tmp/t
  python -m experiments.rbm --config=experiments/configs/dbn_mnist.py --workdir=runs/dbn

Any config field can be overridden with ``--config.<field>=value``. Re-running the
same command resumes from the last checkpoint in ``--workdir``.
"""

from absl import flags
from ml_collections import config_flags

from experiments import launch

_CONFIG = config_flags.DEFINE_config_file("config", launch.config_path("rbm_pcd_mnist.py"),
                                          launch.CONFIG_HELP, lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, launch.WORKDIR_HELP, required=True)

if __name__ == "__main__":
    launch.run(launch.main_for(_CONFIG, _WORKDIR))
