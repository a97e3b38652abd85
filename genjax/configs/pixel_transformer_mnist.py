"""An autoregressive Transformer over pixels with Bernoulli pixels on the embedded mnist5k
digits, the ``gated_pixelcnn_mnist`` data and protocol (the exact test NLL in nats per
image): the 784 pixels in raster order as a sequence, each position fed the previous
pixel and its learned position embedding, pre-norm blocks of causal self-attention and a
GELU MLP. Samples come from a key/value cache, one position per step.

Command:
  genjax-train pixelcnn --config=pixel_transformer_mnist --workdir=runs/pixel_transformer

Budget: the train step runs at 8.4 examples/s on a 2-core Intel Xeon (family 6, model
167; `python -m benchmarks.throughput --configs=pixel_transformer_mnist --batch_sizes=64`),
a quarter of PyTorch's fused attention on the same network, so the default 120 steps
are about 15 training minutes there. Its exact test NLL at that budget is not measured
yet.

Variants: ``:test`` is a tiny configuration for tests and smoke runs.
"""

import ml_collections

from genjax.configs import common, gated_pixelcnn_mnist


def get_config(variant: str = "") -> ml_collections.ConfigDict:
    c = gated_pixelcnn_mnist.get_config(variant)
    c.model = "transformer"
    c.features = 64 if not variant else 8   # token width
    c.num_layers = 4 if not variant else 1  # Transformer blocks
    c.num_heads = 4 if not variant else 2
    c.mlp_ratio = 4
    c.positional = "learned"                # learned: a vector per position | 2d: row + column
    c.learning_rate = 1e-3
    return common.set_budget(c, variant, num_steps=120, every=60)
