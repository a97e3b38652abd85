"""PixelCNN++ (Salimans et al. 2017) on the embedded mnist5k digits as 8-bit images: the
two-stream network of gated residual blocks with concat_elu, and a discretised logistic
mixture per pixel, scored in bits/dim on the test digits (the unit of the diffusion bound
and of the flows).

Command:
  genjax-train pixelcnn --config=pixelcnn_pp_mnist --workdir=runs/pixelcnn_pp

Budget and result (2-core AMD EPYC, family 26, with ``--config.train_minutes=15
--config.num_steps=5000``): stopped at step 501 after 15 training minutes (about 36
examples/s), final evaluation 6 minutes. Test NLL 703.9 nats (standard error 5.3):
**1.295 bits/dim** on the 8-bit test digits; 1,000 samples: domain FID 944.5 (stroke
fragments).

Variants: ``:test`` is a tiny configuration for tests and smoke runs (a few steps;
compiling takes most of its time).
"""

import ml_collections

from genjax.configs import gated_pixelcnn_mnist


def get_config(variant: str = "") -> ml_collections.ConfigDict:
    c = gated_pixelcnn_mnist.get_config(variant)
    c.model = "pixelcnn++"
    c.likelihood = "logistic_mixture"
    c.num_mixtures = 5
    c.preprocess = "symmetric"
    c.eval_preprocess = None
    if not variant:
        c.num_layers = 3  # gated residual blocks on each of the two passes
    else:
        c.num_mixtures = 2
        c.num_layers = 1
    return c
