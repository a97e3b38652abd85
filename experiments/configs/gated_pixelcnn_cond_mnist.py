"""Class-conditional Gated PixelCNN on the embedded mnist5k digits: the
``gated_pixelcnn_mnist`` network with a learned per-class bias in every gate
(van den Oord et al. 2016b), sampled one row per class.

Command:
  python -m experiments.pixelcnn --config=experiments/configs/gated_pixelcnn_cond_mnist.py --workdir=runs/pixelcnn_cond

Budget and result (2-core AMD EPYC, family 26, with ``--config.train_minutes=15
--config.num_steps=5000``): stopped at step 699 after 15 training minutes (about 45
examples/s), final evaluation 3 minutes. Exact test NLL 87.54 nats (standard error 0.65;
0.161 bits/dim); the domain classifier recognises the class asked for in 34.4 % of 1,000
samples (FID 660.8): class-shaped broken strokes, not yet readable digits.

Variants: ``:test`` is a tiny, seconds-long configuration for tests and smoke runs.
"""

import ml_collections

from experiments.configs import gated_pixelcnn_mnist


def get_config(variant: str = "") -> ml_collections.ConfigDict:
    c = gated_pixelcnn_mnist.get_config(variant)
    c.num_classes = 10
    return c
