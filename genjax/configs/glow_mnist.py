"""Glow (Kingma & Dhariwal 2018) on the embedded mnist5k digits, dequantised as for
``realnvp_mnist``: per level a squeeze, flow steps of ActNorm, an invertible 1x1
convolution (LU-parameterised) and a channel affine coupling, then a split.

Command:
  genjax-train flow --config=glow_mnist --workdir=runs/glow

Budget and result (one seed, 2-core Intel Xeon family 6 model 167, with
``--config.train_minutes=15 --config.num_steps=100000``): 3,448 steps in 15 minutes,
test **1.752 bits/dim** (standard error 0.011), inversion error 1.4e-6; its samples at
temperature 0.7 are strokes rather than digits (domain FID 4222, precision 0.19):
docs/results.md, "Normalizing flows".

Variants: ``:test`` is a tiny configuration for tests and smoke runs (a few steps;
compiling takes most of its time).
"""

import ml_collections

from genjax.configs import realnvp_mnist


def get_config(variant: str = "") -> ml_collections.ConfigDict:
    c = realnvp_mnist.get_config(variant)
    c.model = "glow"
    if not variant:
        c.num_layers = 4
    else:
        c.levels = 2
    return c
