"""A coupling flow on the 2-D mode benchmark (``gaussian_mixtures/ring8``: 8 Gaussians on a
circle of radius 2, std 0.02; ``--config.dataset=gaussian_mixtures/grid25`` for the 5x5
grid): affine couplings with MLP conditioners, alternating halves, ActNorm after each.
Its final evaluation reports the test NLL and the mode metrics of `benchmarks/modes.py`.

Command:
  python -m experiments.flow --config=experiments/configs/flow_ring2d.py --workdir=runs/flow_ring2d

Budget and result: not yet measured.

Variants: ``:test`` is a tiny, seconds-long configuration for tests and smoke runs.
"""

import ml_collections

from experiments.configs import realnvp_mnist


def get_config(variant: str = "") -> ml_collections.ConfigDict:
    c = realnvp_mnist.get_config(variant)
    c.model = "points"
    c.dataset = "gaussian_mixtures/ring8"
    c.preprocess = "raw"
    c.num_layers = 8 if not variant else 2
    c.width = 128 if not variant else 8
    c.num_blocks = 2
    c.coupling = "spline"    # affine | spline (rational-quadratic, Durkan et al. 2019)
    c.bins = 8               # spline bins on [-4, 4] (after each ActNorm)
    c.temperature = 1.0
    c.batch_size = 256 if not variant else 32
    c.eval_samples = 2500 if not variant else 200
    c.eval_batch_size = 500 if not variant else 200
    if not variant:
        c.num_steps = 5000
    return c
