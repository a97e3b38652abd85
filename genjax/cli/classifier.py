"""Train the mnist5k domain classifier and export its weights for offline FID/IS.

  genjax-train classifier --workdir=runs/classifier --export_dir=genjax/metrics/weights/mnist5k_classifier
  genjax-train classifier --workdir=/tmp/c   # weights in /tmp/c/weights

After training, the classifier's parameters are written with orbax to ``--export_dir``
(default: ``<workdir>/weights``, so a trial run never replaces the shipped weights that
`genjax.metrics.domain` loads; name their directory to replace them).
"""

from absl import flags

from genjax.cli import launch

_CONFIG, _WORKDIR = launch.define_run_flags("classifier_mnist5k")
_EXPORT = flags.DEFINE_string("export_dir", None, "Where to write the trained weights "
                              "(default: <workdir>/weights; genjax/metrics/weights/mnist5k_classifier replaces the shipped ones).")


def export(state) -> None:
    from genjax.metrics import domain
    from genjax.report import info

    info(f"Classifier weights written to "
         f"{domain.save_params(state.nets['model'].params, _EXPORT.value or _WORKDIR.value + '/weights')}")


main = launch.main_for(_CONFIG, _WORKDIR, after=export, family="classifier")

if __name__ == "__main__":
    launch.run(main)
