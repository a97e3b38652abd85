"""The default RBM (500 hidden units, mnist5k) trained by CD-1 instead of PCD: the negative
phase is one Gibbs sweep started at each training digit (Hinton 2002).

Command:
  genjax-train rbm --config=rbm_cd1_mnist --workdir=runs/rbm_cd1

Budget and result (one seed, 2-core Intel Xeon family 6 model 167): 0.77 training
minutes (compile included), 4.4 minutes with the evaluations. Test log-likelihood by
AIS -126.57 nats (band -126.69 to -126.43), reverse AIS -129.17 (standard error 1.0):
some 26-27 nats below PCD's and CD-25's, brackets far apart. Pseudo-likelihood -79.75, the best of the four
configs: CD-1 learns the data's local structure, not a distribution chains can sample
(independent chains from noise: domain FID 2638, rarest class 0.3 %).

Variants: ``:test`` is a tiny configuration for tests and smoke runs (a few steps;
compiling takes most of its time).
"""

import ml_collections

from genjax.configs import rbm_pcd_mnist


def get_config(variant: str = "") -> ml_collections.ConfigDict:
    c = rbm_pcd_mnist.get_config(variant)
    c.persistent = False
    c.cd_k = 1
    return c
