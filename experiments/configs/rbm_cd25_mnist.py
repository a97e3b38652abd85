"""The default RBM (500 hidden units, mnist5k) trained by CD-25: 25 Gibbs sweeps from each
training digit per update (Salakhutdinov & Murray 2008's best-scored RBM used CD-25).

Command:
  python -m experiments.rbm --config=experiments/configs/rbm_cd25_mnist.py --workdir=runs/rbm_cd25

Budget and result: not measured yet.

Variants: ``:test`` is a tiny, seconds-long configuration for tests and smoke runs.
"""

import ml_collections

from experiments.configs import rbm_pcd_mnist


def get_config(variant: str = "") -> ml_collections.ConfigDict:
    c = rbm_pcd_mnist.get_config(variant)
    c.persistent = False
    c.cd_k = 25 if variant != "test" else 3
    return c
