"""Train the domain classifier of a labelled dataset and register it for offline FID/IS.

  genjax-train classifier --config.dataset=fashion_mnist --workdir=runs/classifier_fm
  genjax-train classifier --config.image_size=16 --workdir=runs/classifier_16
  genjax-train classifier --workdir=runs/classifier --export_dir=genjax/metrics/weights/mnist5k_classifier

After training on the dataset's train split, the classifier's parameters (orbax) and
``classifier.json`` (dataset id, image shape, classes, test accuracy, steps) are written
to the registry folder ``<GENJAX_CACHE or ~/.cache/genjax>/classifiers/<dataset_id>-<H>x<W>x<C>``,
where every run on that data and image shape finds it, or to ``--export_dir`` (the
last command replaces the shipped mnist5k weights, which serve mnist5k and mnist at
28x28x1 before the registry). A dataset without class labels is refused.
"""

from absl import flags

from genjax.cli import launch

_CONFIG, _WORKDIR = launch.define_run_flags("classifier_mnist5k")
_EXPORT = flags.DEFINE_string("export_dir", None, "Where to write the trained classifier "
                              "(default: its registry folder, <cache>/classifiers/<dataset_id>-<H>x<W>x<C>; "
                              "genjax/metrics/weights/mnist5k_classifier replaces the shipped one).")


def export(state) -> None:
    from genjax import loop
    from genjax.tasks import classifier

    run = loop.setup(_CONFIG.value)
    classifier.export(state, run.eval_spec, run.image_shape, _WORKDIR.value, _EXPORT.value)


main = launch.main_for(_CONFIG, _WORKDIR, after=export, family="classifier")

if __name__ == "__main__":
    launch.run(main)
