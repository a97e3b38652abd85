"""The plain PixelCNN (van den Oord et al. 2016a): a 7x7 type-A masked convolution and
3x3 type-B masked residual layers, Bernoulli pixels, on the embedded mnist5k digits (the
``gated_pixelcnn_mnist`` data and protocol). Its stacked masks leave a blind spot, which
the gated config removes: the comparison of the two is the point of this config.

Command:
  python -m experiments.pixelcnn --config=experiments/configs/pixelcnn_mnist.py --workdir=runs/pixelcnn_plain

Budget and result: not yet measured.

Variants: ``:test`` is a tiny, seconds-long configuration for tests and smoke runs.
"""

import ml_collections

from experiments.configs import gated_pixelcnn_mnist


def get_config(variant: str = "") -> ml_collections.ConfigDict:
    c = gated_pixelcnn_mnist.get_config(variant)
    c.model = "pixelcnn"
    c.num_layers = 7 if not variant else 1  # 3x3 masked layers after the 7x7 one
    return c
