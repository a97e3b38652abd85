"""RealNVP (Dinh et al. 2017) on the embedded mnist5k digits, dequantised (x + u) / 256:
the logit preprocessing, checkerboard and channel affine couplings with conv
conditioners at two scales (squeeze, factor out half), ActNorm after each coupling; the
test bits/dim counts the 8-bit discretisation and every log-det.

Command:
  genjax-train flow --workdir=runs/realnvp

Budget and result (2-core AMD EPYC, family 26, with ``--config.train_minutes=15
--config.num_steps=100000`` for seeds 0, 1, 2, which stopped at steps 2,930 / 2,734 /
2,912; the default 2,900 steps is that budget): about 200 examples/s, then 2 minutes of
final evaluation. Test bits/dim (dequantised, one draw per digit) 1.567 / 1.563 / 1.541,
median **1.563**; inversion error on real test digits at most 3.4e-5; 1,000 samples at
temperature 0.7: domain FID median 472.6, precision 0.657, every class present but the
rarest at 1.2-4.4 % (in a rerun, the 1s: their latents are heavy-tailed, so a lower
temperature drops them; docs/results.md, "Normalizing flows").

Variants: ``:test`` is a tiny configuration for tests and smoke runs (a few steps;
compiling takes most of its time).
"""

import ml_collections

from genjax.configs import common


def get_config(variant: str = "") -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.task = "flow"
    c.model = "realnvp"      # realnvp | glow | maf (images) | points (2-D mixtures)
    c.levels = 2             # scales: each squeezes 2x2 into channels and factors out half
    c.num_layers = 3         # couplings per group (RealNVP) / flow steps per level (Glow)
    c.width = 32             # conditioner width
    c.num_blocks = 1         # residual blocks (conv) / hidden layers (points) per conditioner
    c.alpha = 0.05           # the logit's margin: logit(alpha + (1 - 2 alpha) x)
    c.temperature = 0.7      # the samples' latent scale
    c.eval_draws = 1         # dequantisation draws per test image
    c.learning_rate = 1e-3
    c.lr_decay = "none"      # none | cosine: the learning rate to 0 over num_steps
    c.clip_norm = 100.0
    common.add_data_and_loop(c, preprocess="unit", batch_size=64, num_steps=2900, every=500)
    c.cpu_dots = "eigen+ynn"  # Eigen's convolutions, YNNPACK's fusions: a 13-28 % faster step
    if variant == "test":
        c.levels = 1
        c.num_layers = 1
        c.width = 8
        common.shrink_for_tests(c, steps=8)
    elif variant:
        raise ValueError(f"Unknown config variant {variant!r}; valid: '' or 'test'.")
    return c
