"""RealNVP (Dinh et al. 2017) on the embedded mnist5k digits, dequantised (x + u) / 256:
the logit preprocessing, checkerboard and channel affine couplings with conv
conditioners at two scales (squeeze, factor out half), ActNorm after each coupling; the
test bits/dim counts the 8-bit discretisation and every log-det.

Command:
  python -m experiments.flow --workdir=runs/realnvp

Budget and result: not yet measured.

Variants: ``:test`` is a tiny, seconds-long configuration for tests and smoke runs.
"""

import ml_collections

from experiments.configs import common


def get_config(variant: str = "") -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.task = "flow"
    c.model = "realnvp"      # realnvp | glow (images) | points (2-D mixtures)
    c.levels = 2             # scales: each squeezes 2x2 into channels and factors out half
    c.num_layers = 3         # couplings per group (RealNVP) / flow steps per level (Glow)
    c.width = 32             # conditioner width
    c.num_blocks = 1         # residual blocks (conv) / hidden layers (points) per conditioner
    c.alpha = 0.05           # the logit's margin: logit(alpha + (1 - 2 alpha) x)
    c.temperature = 0.7      # the samples' latent scale
    c.eval_draws = 1         # dequantisation draws per test image
    c.learning_rate = 1e-3
    c.clip_norm = 100.0
    common.add_data_and_loop(c, preprocess="unit", batch_size=64, num_steps=2000, every=500)
    if variant == "test":
        c.levels = 1
        c.num_layers = 1
        c.width = 8
        common.shrink_for_tests(c, steps=8)
    elif variant:
        raise ValueError(f"Unknown config variant {variant!r}; valid: '' or 'test'.")
    return c
