"""Class-conditional Gated PixelCNN on the embedded mnist5k digits: the
``gated_pixelcnn_mnist`` network with a learned per-class bias in every gate
(van den Oord et al. 2016b), sampled one row per class.

Command:
  python -m experiments.pixelcnn --config=experiments/configs/gated_pixelcnn_cond_mnist.py --workdir=runs/pixelcnn_cond

Budget and result: not yet measured.

Variants: ``:test`` is a tiny, seconds-long configuration for tests and smoke runs.
"""

import ml_collections

from experiments.configs import gated_pixelcnn_mnist


def get_config(variant: str = "") -> ml_collections.ConfigDict:
    c = gated_pixelcnn_mnist.get_config(variant)
    c.num_classes = 10
    return c
