"""The default RBM (500 hidden units, PCD-1, mnist5k) centered (Melchior, Fischer & Wiskott
2016): visible and hidden offsets follow the data mean and the mean hidden probability
at rate 0.01, with b and c re-parameterised so that each shift leaves the distribution
unchanged.

Command:
  python -m experiments.rbm --config=experiments/configs/rbm_centered_mnist.py --workdir=runs/rbm_centered

Budget and result: not measured yet.

Variants: ``:test`` is a tiny, seconds-long configuration for tests and smoke runs.
"""

import ml_collections

from experiments.configs import rbm_pcd_mnist


def get_config(variant: str = "") -> ml_collections.ConfigDict:
    c = rbm_pcd_mnist.get_config(variant)
    c.centering_rate = 0.01
    return c
