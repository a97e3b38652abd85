"""The default RBM (500 hidden units, mnist5k) trained by CD-25: 25 Gibbs sweeps from each
training digit per update (Salakhutdinov & Murray 2008's best-scored RBM used CD-25).

Command:
  genjax-train rbm --config=rbm_cd25_mnist --workdir=runs/rbm_cd25

Budget and result (one seed, 2-core Intel Xeon family 6 model 167): 6.9 training
minutes (compile included; 25 sweeps per update make a step about 8 times PCD-1's),
then the evaluations. Test log-likelihood by AIS -99.16 nats (band -99.62 to -98.25),
reverse AIS -103.07 (standard error 0.9): level with PCD-1 (median -100.28) at eight
times its cost, and 27 nats above CD-1 with brackets far apart. Pseudo-likelihood
-80.72; samples: domain FID 415, precision 0.72, rarest class 4.3 %.

Variants: ``:test`` is a tiny configuration for tests and smoke runs (a few steps;
compiling takes most of its time).
"""

import ml_collections

from genjax.configs import rbm_pcd_mnist


def get_config(variant: str = "") -> ml_collections.ConfigDict:
    c = rbm_pcd_mnist.get_config(variant)
    c.persistent = False
    c.cd_k = 25 if variant != "test" else 3
    return c
