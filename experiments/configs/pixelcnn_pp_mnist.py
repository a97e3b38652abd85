"""PixelCNN++ (Salimans et al. 2017) on the embedded mnist5k digits as 8-bit images: the
two-stream network of gated residual blocks with concat_elu, and a discretised logistic
mixture per pixel, scored in bits/dim on the test digits (the unit of the diffusion bound
and of the flows).

Command:
  python -m experiments.pixelcnn --config=experiments/configs/pixelcnn_pp_mnist.py --workdir=runs/pixelcnn_pp

Budget and result: not yet measured.

Variants: ``:test`` is a tiny, seconds-long configuration for tests and smoke runs.
"""

import ml_collections

from experiments.configs import gated_pixelcnn_mnist


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
