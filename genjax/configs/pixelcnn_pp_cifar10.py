"""PixelCNN++ on CIFAR-10 (32x32x3, 10 logistic components whose channel means depend on
the earlier channels). Needs the dataset: ``--config.download=True`` fetches it through
tfds (or point ``--config.data_dir`` at a prepared copy); sample quality then needs the
FID InceptionV3 (``genjax-evaluate --extractor=inception ...``).

Command:
  genjax-train pixelcnn --config=pixelcnn_pp_cifar10 --workdir=runs/pixelcnn_pp_cifar10

Not run: this machine cannot download CIFAR-10, and the paper's 2.92 bits/dim took days
of GPU time with a far larger network; this config is meant for a GPU.

Variants: ``:test`` is the tiny network at 28x28 on mnist5k (offline), for smoke runs.
"""

import ml_collections

from genjax.configs import common, pixelcnn_pp_mnist


def get_config(variant: str = "") -> ml_collections.ConfigDict:
    c = pixelcnn_pp_mnist.get_config(variant)
    if not variant:
        c.features = 80
        c.num_layers = 5
        c.num_mixtures = 10
        c.learning_rate = 2e-4
    common.use_cifar10(c, variant)
    if variant:
        c.dataset = "mnist5k"
    return c
