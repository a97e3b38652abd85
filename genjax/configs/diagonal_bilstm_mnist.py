"""PixelRNN's Diagonal BiLSTM (van den Oord et al. 2016) with Bernoulli pixels on the
embedded mnist5k digits, the ``gated_pixelcnn_mnist`` data and protocol (the exact test
NLL in nats per image). A 7x7 type-A masked convolution, then residual layers of two
LSTMs over the skewed image's diagonals (a ``lax.scan`` over the H + W - 1 diagonals, the
2 x 1 state-to-state convolution as one matrix product), left to right and right to left,
the second's output moved one row down: every earlier pixel is in view.

Command:
  genjax-train pixelcnn --config=diagonal_bilstm_mnist --workdir=runs/diagonal_bilstm

Budget and result: see the likelihood table of docs/results.md (command, steps in
15 training minutes, exact test NLL).

Variants: ``:test`` is a tiny configuration for tests and smoke runs.
"""

import ml_collections

from genjax.configs import common, row_lstm_mnist


def get_config(variant: str = "") -> ml_collections.ConfigDict:
    c = row_lstm_mnist.get_config(variant)
    c.model = "diagonal_bilstm"
    return common.set_budget(c, variant, num_steps=1000, every=500)
