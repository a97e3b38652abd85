"""A deep belief net (Hinton, Osindero & Teh 2006) of two RBMs, 500 and 500 hidden units,
trained greedily with PCD-1 on mnist5k: the first half of the steps trains the first
RBM on the digits, the second half the second RBM on the first one's hidden
probabilities. Samples: Gibbs chains of the top RBM, propagated down.

Command:
  genjax-train rbm --config=dbn_mnist --workdir=runs/dbn

Budget and result (one seed, 2-core Intel Xeon family 6 model 167, measured while the
test suite ran beside it): 8,000 updates in 3.1 training minutes. The first RBM alone:
free-energy gap 5.9 nats, pseudo-likelihood -81.03. The net's samples (1,000 chains of
the top RBM from noise, 1,000 sweeps, propagated down) are not yet digits of every
class: domain FID 2510, precision 0.999, recall 0.04, 6 classes of 10 (one seed). Its
likelihood bound is not computed.

Variants: ``:test`` is a tiny configuration for tests and smoke runs (a few steps;
compiling takes most of its time).
"""

import ml_collections

from genjax.configs import rbm_pcd_mnist


def get_config(variant: str = "") -> ml_collections.ConfigDict:
    c = rbm_pcd_mnist.get_config(variant)
    c.hidden = (500, 500) if variant != "test" else (16, 12)
    if variant != "test":
        c.num_steps = 2 * c.num_steps
    return c
