"""Train a normalizing flow (RealNVP, Glow, a coupling flow on 2-D points).

  python -m experiments.flow --workdir=runs/realnvp
  python -m experiments.flow --config=experiments/configs/realnvp_mnist.py:test --workdir=/tmp/t
  python -m experiments.flow --config=experiments/configs/glow_mnist.py --workdir=runs/glow

Any config field can be overridden with ``--config.<field>=value``. Re-running the
same command resumes from the last checkpoint in ``--workdir``.
"""

from absl import flags
from ml_collections import config_flags

from experiments import launch

_CONFIG = config_flags.DEFINE_config_file("config", launch.config_path("realnvp_mnist.py"),
                                          launch.CONFIG_HELP, lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, launch.WORKDIR_HELP, required=True)

if __name__ == "__main__":
    launch.run(launch.main_for(_CONFIG, _WORKDIR))
