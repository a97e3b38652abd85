"""PixelRNN's Diagonal BiLSTM (van den Oord et al. 2016) with Bernoulli pixels on the
embedded mnist5k digits, the ``gated_pixelcnn_mnist`` data and protocol (the exact test
NLL in nats per image). A 7x7 type-A masked convolution, then residual layers of two
LSTMs over the skewed image's diagonals (a ``lax.scan`` over the H + W - 1 diagonals, the
2 x 1 state-to-state convolution as one matrix product), left to right and right to left,
the second's output moved one row down: every earlier pixel is in view.

Command:
  genjax-train pixelcnn --config=diagonal_bilstm_mnist --workdir=runs/diagonal_bilstm

Budget: the train step runs at 33.8 examples/s on a 2-core Intel Xeon (family 6, model
167; `python -m benchmarks.throughput --configs=diagonal_bilstm_mnist --batch_sizes=64`),
so the default 450 steps are about 15 training minutes there. Its exact test NLL at that
budget is not measured yet.

Variants: ``:test`` is a tiny configuration for tests and smoke runs.
"""

import ml_collections

from genjax.configs import common, row_lstm_mnist


def get_config(variant: str = "") -> ml_collections.ConfigDict:
    c = row_lstm_mnist.get_config(variant)
    c.model = "diagonal_bilstm"
    return common.set_budget(c, variant, num_steps=450, every=150)
