"""PixelRNN's Row LSTM (van den Oord et al. 2016) with Bernoulli pixels on the embedded
mnist5k digits, the ``gated_pixelcnn_mnist`` data and protocol (binarised afresh every
epoch, tested on the statically binarised test digits: the exact test NLL in nats per
image). A 7x7 type-A masked convolution, then residual Row LSTM layers: each row's state
from the row above through a width-3 convolution, written as one matrix product inside a
``lax.scan`` over the rows. Its receptive field is a triangle above each pixel (the
Diagonal BiLSTM of ``diagonal_bilstm_mnist`` sees all of the context).

Command:
  genjax-train pixelcnn --config=row_lstm_mnist --workdir=runs/row_lstm

Budget: the train step runs at 88.7 examples/s on a 2-core Intel Xeon (family 6, model
167; `python -m benchmarks.throughput --configs=row_lstm_mnist --batch_sizes=64`), so
the default 1,200 steps are about 15 training minutes there. Its exact test NLL at that
budget is not measured yet.

Variants: ``:test`` is a tiny configuration for tests and smoke runs.
"""

import ml_collections

from genjax.configs import common, gated_pixelcnn_mnist


def get_config(variant: str = "") -> ml_collections.ConfigDict:
    c = gated_pixelcnn_mnist.get_config(variant)
    c.model = "row_lstm"
    c.features = 32 if not variant else 4   # LSTM units; the residual stream has twice as many
    c.num_layers = 4 if not variant else 1  # LSTM layers after the 7x7 masked convolution
    c.head = 64 if not variant else 8
    c.unroll = 1                            # scan iterations per loop trip
    c.state_step = "matmul"                 # the state-to-state step: matmul | conv
    return common.set_budget(c, variant, num_steps=1200, every=400)
