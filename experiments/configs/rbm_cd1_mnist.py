"""The default RBM (500 hidden units, mnist5k) trained by CD-1 instead of PCD: the negative
phase is one Gibbs sweep started at each training digit (Hinton 2002).

Command:
  python -m experiments.rbm --config=experiments/configs/rbm_cd1_mnist.py --workdir=runs/rbm_cd1

Budget and result: not measured yet.

Variants: ``:test`` is a tiny, seconds-long configuration for tests and smoke runs.
"""

import ml_collections

from experiments.configs import rbm_pcd_mnist


def get_config(variant: str = "") -> ml_collections.ConfigDict:
    c = rbm_pcd_mnist.get_config(variant)
    c.persistent = False
    c.cd_k = 1
    return c
