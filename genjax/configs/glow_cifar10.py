"""Glow on CIFAR-10 (32x32x3, dequantised 8-bit colour): the ``glow_mnist`` flow at three
scales with wider coupling networks. Needs the dataset: ``--config.download=True``
fetches it through tfds (or point ``--config.data_dir`` at a prepared copy); sample
quality then needs the FID InceptionV3 (``genjax-evaluate
--extractor=inception ...``); the test bits/dim is reported either way.

Command:
  genjax-train flow --config=glow_cifar10 --workdir=runs/glow_cifar10

Not run: this machine cannot download CIFAR-10, and the paper's 3.35 bits/dim took a
network of 3 levels x 32 steps x 512 channels trained for days on GPUs; this smaller one
(3 x 8 x 128) is meant for a GPU too.

Variants: ``:test`` is the tiny network at 28x28 on mnist5k (offline), for smoke runs.
"""

import ml_collections

from genjax.configs import common, glow_mnist


def get_config(variant: str = "") -> ml_collections.ConfigDict:
    c = glow_mnist.get_config(variant)
    if not variant:
        c.levels = 3           # 32 -> 16 -> 8 -> 4
        c.num_layers = 8       # flow steps per level
        c.width = 128
        c.learning_rate = 5e-4
        c.lr_decay = "cosine"
    common.use_cifar10(c, variant)
    if variant:
        c.dataset = "mnist5k"
    return c
