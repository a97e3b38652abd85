"""A deep belief net (Hinton, Osindero & Teh 2006) of two RBMs, 500 and 500 hidden units,
trained greedily with PCD-1 on mnist5k: the first half of the steps trains the first
RBM on the digits, the second half the second RBM on the first one's hidden
probabilities. Samples: Gibbs chains of the top RBM, propagated down.

Command:
  python -m experiments.rbm --config=experiments/configs/dbn_mnist.py --workdir=runs/dbn

Budget and result: not measured yet.

Variants: ``:test`` is a tiny, seconds-long configuration for tests and smoke runs.
"""

import ml_collections

from experiments.configs import rbm_pcd_mnist


def get_config(variant: str = "") -> ml_collections.ConfigDict:
    c = rbm_pcd_mnist.get_config(variant)
    c.hidden = [500, 500] if variant != "test" else [16, 12]
    if variant != "test":
        c.num_steps = 2 * c.num_steps
    return c
