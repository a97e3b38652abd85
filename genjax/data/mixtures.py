"""`gaussian_mixtures`: the 2-D mode-collapse datasets, as a tfds dataset.

Two builder configs, the standard setups of the unrolled-GAN (Metz et al. 2017) and
VEEGAN (Srivastava et al. 2017) papers:

* ``ring8``: 8 Gaussians evenly spaced on a circle of radius 2, standard deviation 0.02;
* ``grid25``: 25 Gaussians on the 5x5 grid {-4, -2, 0, 2, 4}^2, standard deviation 0.05.

Each example is a point (float32 [2], under the pipeline's ``image`` key, read with
``preprocess="raw"``) and the index of its mode (``label``). The points are drawn once
with a fixed seed (20,000 train, 5,000 test, modes equally likely), so every machine
sees the same data, and they flow through the same input pipeline as the images.
"""

from __future__ import annotations

import numpy as np

from genjax.data import _tensorflow  # noqa: F401  (first: quiet, without Keras)
import tensorflow_datasets as tfds

SEED = 2017
SIZES = {"train": 20_000, "test": 5_000}


def centers(name: str) -> np.ndarray:
    """The modes' means [M, 2] of config ``name`` (``ring8`` or ``grid25``)."""
    if name == "ring8":
        angles = 2 * np.pi * np.arange(8) / 8
        return 2.0 * np.stack([np.cos(angles), np.sin(angles)], axis=1)
    if name == "grid25":
        g = np.arange(-4.0, 5.0, 2.0)
        return np.stack(np.meshgrid(g, g, indexing="ij"), axis=-1).reshape(-1, 2)
    raise ValueError(f"Unknown mixture {name!r}; valid: ring8, grid25.")


STDS = {"ring8": 0.02, "grid25": 0.05}


def sample(name: str, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """n points of mixture ``name`` and their mode indices."""
    mu = centers(name)
    modes = rng.integers(0, len(mu), n)
    return (mu[modes] + STDS[name] * rng.standard_normal((n, 2))).astype(np.float32), modes


class GaussianMixtures(tfds.core.GeneratorBasedBuilder):
    """Points from a ring of 8 or a grid of 25 Gaussians; prepares offline."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "ring8 and grid25, 20,000 train / 5,000 test points."}
    BUILDER_CONFIGS = [tfds.core.BuilderConfig(name=n, description=f"{n}, std {s}")
                       for n, s in STDS.items()]

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            description=__doc__,
            features=tfds.features.FeaturesDict({
                "image": tfds.features.Tensor(shape=(2,), dtype=np.float32),
                "label": tfds.features.ClassLabel(num_classes=len(centers(self.builder_config.name))),
            }),
            supervised_keys=("image", "label"),
        )

    def _split_generators(self, dl_manager):
        del dl_manager  # generated, nothing to download
        rng = np.random.default_rng([SEED, len(centers(self.builder_config.name))])
        return {split: self._generate_examples(*sample(self.builder_config.name, n, rng))
                for split, n in SIZES.items()}

    def _generate_examples(self, points, modes):
        for i, (p, m) in enumerate(zip(points, modes)):
            yield i, {"image": p, "label": int(m)}
