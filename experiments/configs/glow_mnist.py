"""Glow (Kingma & Dhariwal 2018) on the embedded mnist5k digits, dequantised as for
``realnvp_mnist``: per level a squeeze, flow steps of ActNorm, an invertible 1x1
convolution (LU-parameterised) and a channel affine coupling, then a split.

Command:
  python -m experiments.flow --config=experiments/configs/glow_mnist.py --workdir=runs/glow

Budget and result: not yet run at this budget (the tests train it end to end and check
it under every driver).

Variants: ``:test`` is a tiny, seconds-long configuration for tests and smoke runs.
"""

import ml_collections

from experiments.configs import realnvp_mnist


def get_config(variant: str = "") -> ml_collections.ConfigDict:
    c = realnvp_mnist.get_config(variant)
    c.model = "glow"
    if not variant:
        c.num_layers = 4
    else:
        c.levels = 2
    return c
