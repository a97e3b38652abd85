"""What every launcher shares: config paths and the absl main around train_and_evaluate.

Flags are defined in each launcher module itself, so ``--help`` lists them there.
"""

import os
from typing import Callable

# Before TensorFlow or XLA load (both read it): their INFO banners (oneDNN, CPU features)
# off, their warnings and errors kept.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")

from absl import app, flags, logging  # noqa: E402

CONFIG_DIR = os.path.join(os.path.dirname(__file__), "configs")
CONFIG_HELP = "Experiment config file (add :test for the tiny variant)."
WORKDIR_HELP = "Directory for checkpoints, metrics and samples; re-running resumes there."


def config_path(name: str) -> str:
    return os.path.join(CONFIG_DIR, name)


def quiet_logging() -> None:
    """Library logs at WARNING unless ``--verbosity`` was given (orbax logs every save at INFO)."""
    if not flags.FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)


def main_for(config: flags.FlagHolder, workdir: flags.FlagHolder,
             after: Callable[[object], None] | None = None) -> Callable[[list], None]:
    """The absl main: quiet library logging, joining a multi-host run if the environment
    names one (`genjax.parallel.initialize`), train_and_evaluate(config, workdir), then
    ``after(final_state)`` if given."""

    def main(argv):
        if len(argv) > 1:
            raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
        quiet_logging()
        from genjax import loop, parallel  # after flag parsing: --help stays fast

        parallel.initialize()  # multi-host when GENJAX_NUM_PROCESSES > 1, else nothing

        state = loop.train_and_evaluate(config.value, workdir.value)
        if after is not None:
            after(state)

    return main
