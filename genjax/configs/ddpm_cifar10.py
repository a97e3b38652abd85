"""DDPM on CIFAR-10 (32x32x3): the ``ddpm_mnist`` recipe with a wider U-Net and the long
CIFAR schedule. Needs the dataset: ``--config.download=True`` fetches it through tfds
(or point ``--config.data_dir`` at a prepared copy). Sample quality then needs the FID
InceptionV3 (``genjax-evaluate --extractor=inception ...``): the domain
classifier applies to 28x28 digits only; the bound in bits/dim is reported either way.

Command:
  genjax-train diffusion --config=ddpm_cifar10 --workdir=runs/ddpm_cifar10

Not run: this machine cannot download CIFAR-10, and 50,000 steps of this U-Net take
days on 2 CPU cores; it is meant for a GPU.

Variants: ``:test`` is the tiny network at 28x28 on mnist5k (offline), for smoke runs.
"""

import ml_collections

from genjax.configs import common, ddpm_mnist


def get_config(variant: str = "") -> ml_collections.ConfigDict:
    c = ddpm_mnist.get_config(variant)
    if not variant:
        c.channels = 64
        c.channel_mult = (1, 2, 2)  # 32 -> 16 -> 8
        c.num_res_blocks = 2
        c.learning_rate = 2e-4
    common.use_cifar10(c, variant)
    if variant:
        c.dataset = "mnist5k"
    return c
