"""A coupling flow on the 2-D mode benchmark (``gaussian_mixtures/ring8``: 8 Gaussians on a
circle of radius 2, std 0.02; ``--config.dataset=gaussian_mixtures/grid25`` for the 5x5
grid): 8 x (ActNorm, rational-quadratic spline coupling with a 2x128 ReLU MLP of the kept
coordinate), alternating halves, Adam decayed to 0 by a cosine. Its final evaluation
reports the test NLL and the mode metrics of `benchmarks/modes.py`.

Command:
  genjax-train flow --config=flow_ring2d --workdir=runs/flow_ring2d

Budget and result (2-core AMD EPYC, family 26; measured through
``python -m benchmarks.modes --methods=flow_affine,flow_spline``, which trains this config
with the benchmark's batch 128 and 5,000 steps, about 36 s a run): all 8 ring modes and
all 25 grid modes covered in each of 3 seeds, 96.3 +- 0.5 % and 94.9 +- 2.2 % of 2,500
samples within 3 std of a mode (``--config.coupling=affine``: 7.7 and 6.7 modes, 50 % and
19 %).

Variants: ``:test`` is a tiny configuration for tests and smoke runs (a few steps;
compiling takes most of its time).
"""

import ml_collections

from genjax.configs import realnvp_mnist


def get_config(variant: str = "") -> ml_collections.ConfigDict:
    c = realnvp_mnist.get_config(variant)
    c.model = "points"
    c.cpu_dots = "auto"      # MLPs only: YNNPACK's dots
    c.dataset = "gaussian_mixtures/ring8"
    c.preprocess = "raw"
    c.num_layers = 8 if not variant else 2
    c.width = 128 if not variant else 8
    c.num_blocks = 2
    c.coupling = "spline"    # affine | spline (rational-quadratic, Durkan et al. 2019)
    c.bins = 16              # spline bins on [-4, 4] (after each ActNorm)
    c.lr_decay = "cosine"    # none | cosine: the learning rate to 0 over num_steps
    c.temperature = 1.0
    c.batch_size = 256 if not variant else 32
    c.eval_samples = 2500 if not variant else 200
    c.eval_batch_size = 500 if not variant else 200
    if not variant:
        c.num_steps = 5000
    return c
