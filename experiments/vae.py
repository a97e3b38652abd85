"""Train an autoencoder or VAE.

  python -m experiments.vae --config=experiments/configs/vae_mnist.py --workdir=runs/vae
  python -m experiments.vae --config=experiments/configs/vae_mnist.py:test --workdir=/tmp/t
  python -m experiments.vae --config=experiments/configs/ae_mnist.py --config.model=conv ...

Any config field can be overridden with ``--config.<field>=value``. Re-running the
same command resumes from the last checkpoint in ``--workdir``.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TF is only the input pipeline here

from absl import app, flags, logging
from ml_collections import config_flags

_DEFAULT_CONFIG = os.path.join(os.path.dirname(__file__), "configs", "vae_mnist.py")
_CONFIG = config_flags.DEFINE_config_file("config", _DEFAULT_CONFIG, "Experiment config file.",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and samples.",
                               required=True)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    if not flags.FLAGS["verbosity"].present:  # orbax logs every save at INFO
        logging.set_verbosity(logging.WARNING)
    from genjax import loop  # after flag parsing: --help stays fast

    loop.train_and_evaluate(_CONFIG.value, _WORKDIR.value)


if __name__ == "__main__":
    app.run(main)
