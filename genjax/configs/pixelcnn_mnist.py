"""The plain PixelCNN (van den Oord et al. 2016a): a 7x7 type-A masked convolution and
3x3 type-B masked residual layers, Bernoulli pixels, on the embedded mnist5k digits (the
``gated_pixelcnn_mnist`` data and protocol). Its stacked masks leave a blind spot, which
the gated config removes: the comparison of the two is the point of this config.

Command:
  genjax-train pixelcnn --config=pixelcnn_mnist --workdir=runs/pixelcnn_plain

Budget and result (2-core Intel Xeon, family 6, model 167, with
``--config.train_minutes=15 --config.num_steps=5000``): stopped at step 2,001 after 15
training minutes (about 220 examples/s; a grid of 100 samples every 500 steps counts as
training time); the default 2,000 steps is that budget. Final evaluation 9 minutes.
Exact test NLL 92.45 nats per image (standard error 0.65; 0.170 bits/dim), 1.65 nats
above the Gated PixelCNN's 90.80 after 911 steps. 1,000 samples: domain FID 751.8,
precision 0.225, recall 0.779, rarest class 2.1 %: stroke fragments.

Variants: ``:test`` is a tiny configuration for tests and smoke runs (a few steps;
compiling takes most of its time).
"""

import ml_collections

from genjax.configs import common, gated_pixelcnn_mnist


def get_config(variant: str = "") -> ml_collections.ConfigDict:
    c = gated_pixelcnn_mnist.get_config(variant)
    c.model = "pixelcnn"
    c.num_layers = 7 if not variant else 1  # 3x3 masked layers after the 7x7 one
    return common.set_budget(c, variant, num_steps=2000, every=500)
