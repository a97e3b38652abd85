"""Train the mnist5k domain classifier and export its weights for offline FID/IS.

  python -m experiments.classifier --workdir=runs/classifier --export_dir=genjax/metrics/weights/mnist5k_classifier
  python -m experiments.classifier --workdir=/tmp/c   # weights in /tmp/c/weights

After training, the classifier's parameters are written with orbax to ``--export_dir``
(default: ``<workdir>/weights``, so a trial run never replaces the shipped weights that
`genjax.metrics.domain` loads; name their directory to replace them).
"""

from absl import flags
from ml_collections import config_flags

from experiments import launch

_CONFIG = config_flags.DEFINE_config_file("config", launch.config_path("classifier_mnist5k.py"),
                                          launch.CONFIG_HELP, lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, launch.WORKDIR_HELP, required=True)
_EXPORT = flags.DEFINE_string("export_dir", None, "Where to write the trained weights "
                              "(default: <workdir>/weights; genjax/metrics/weights/mnist5k_classifier replaces the shipped ones).")


def export(state) -> None:
    from genjax.metrics import domain
    from genjax.report import info

    info(f"Classifier weights written to "
         f"{domain.save_params(state.nets['model'].params, _EXPORT.value or _WORKDIR.value + '/weights')}")


if __name__ == "__main__":
    launch.run(launch.main_for(_CONFIG, _WORKDIR, after=export))
