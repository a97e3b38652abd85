"""PixelRNN (van den Oord et al. 2016): the Row LSTM and the Diagonal BiLSTM, residual
stacks of LSTM layers over an image after a 7x7 type-A masked convolution.

Both map images [B, H, W, C] to per-pixel parameters [B, H, W, P] whose value at pixel
(i, j) depends only on the pixels before it in raster order, like the PixelCNNs of
`genjax.nn.pixelcnn` (the same likelihoods, sampler and evaluation use them).

* **Row LSTM**: row i's state comes from row i - 1's through a width-3 convolution
  (state-to-state) plus a masked 1 x 3 convolution of row i's input (input-to-state:
  columns j - 1 and j). Its receptive field is a triangle above the pixel.
* **Diagonal BiLSTM**: the input is skewed (row i moved i columns right) so that each
  column of the skewed map is an anti-diagonal of the image; an LSTM runs over those
  columns with a 2 x 1 state-to-state convolution, so pixel (i, j)'s state comes from
  (i - 1, j) and (i, j - 1). A second LSTM runs right to left on the mirrored image; its
  output moves one row down before the two are added, so nothing from the current row
  right of a pixel (or the pixel itself) leaks in. The first layer's right-to-left LSTM
  also reads the pixels themselves (allowed: its output moves a row down): every feature
  at a position excludes that position's own pixel, so without this the last pixel of
  row i - 1 would reach row i's first columns through nothing (the 7x7 first layer only
  looks 3 columns right). With it the network sees every earlier pixel (tested).

Every recurrence runs as ``lax.scan`` (over rows, or over the H + W - 1 diagonals). The
state-to-state convolution over one row or diagonal is small, so it is written as one
matrix product of shifted copies of the state (``state_conv=False``); the XLA
convolution is kept as an option for the benchmark that compares the two.

For sampling the network splits like `genjax.nn.pixelcnn.GatedPixelCNN`: `context` holds
what row i needs from the rows above (the first layer's taps above the row, each layer's
state on row i - 1, and the Diagonal BiLSTM's right-to-left output, which only sees rows
above), and `rows` runs one row from it (the Diagonal BiLSTM's left-to-right LSTM as a
scan along the row). ``__call__`` equals ``rows(x, context(x))`` row by row.
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from genjax.nn.layers import Dense
from genjax.nn.pixelcnn import MaskedConv, ShiftedConv, shift_down

KINDS = ("row_lstm", "diagonal_bilstm")
_ROW_TAPS, _DIAGONAL_TAPS = (-1, 0, 1), (-1, 0)  # offsets along the row / the diagonal


def skew(x: jax.Array) -> jax.Array:
    """[B, H, W, C] -> [B, H, W + H - 1, C] with row i moved i columns right (zeros
    elsewhere): column k of the result holds the anti-diagonal i + j = k."""
    b, h, w, c = x.shape
    flat = jnp.pad(x, ((0, 0), (0, 0), (0, h), (0, 0))).reshape(b, h * (w + h), c)
    return flat[:, :h * (w + h - 1)].reshape(b, h, w + h - 1, c)


def unskew(x: jax.Array, width: int) -> jax.Array:
    """The inverse of `skew` for images ``width`` wide."""
    b, h, _, c = x.shape
    flat = jnp.pad(x.reshape(b, h * (width + h - 1), c), ((0, 0), (0, h), (0, 0)))
    return flat.reshape(b, h, width + h, c)[:, :, :width]


def _shift(x: jax.Array, offset: int) -> jax.Array:
    """``x`` [B, N, F] moved along axis 1 so that position p holds ``x[:, p + offset]``
    (zeros outside)."""
    if offset == 0:
        return x
    n = x.shape[1]
    padded = jnp.pad(x, ((0, 0), (max(-offset, 0), max(offset, 0)), (0, 0)))
    return padded[:, max(offset, 0):max(offset, 0) + n]


def state_to_state(h: jax.Array, kernel: jax.Array, offsets: Sequence[int],
                   conv: bool = False) -> jax.Array:
    """sum_a h[:, p + offsets[a]] @ kernel[a] along axis 1 of the state ``h`` [B, N, F]
    (zeros beyond its ends; ``kernel`` [taps, F, G]): one matrix product of the shifted
    copies, or with ``conv`` the same as an XLA convolution."""
    kernel = kernel.astype(h.dtype)
    if conv:
        pads = ((-offsets[0], offsets[-1]),)
        return jax.lax.conv_general_dilated(h, kernel, (1,), pads,
                                            dimension_numbers=("NWC", "WIO", "NWC"))
    copies = jnp.concatenate([_shift(h, d) for d in offsets], axis=-1)
    return copies @ kernel.reshape(-1, kernel.shape[-1])


def lstm_cell(pre: jax.Array, c: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(h, c) of an LSTM from the gate pre-activations [..., 4F] (output, forget, input,
    candidate; the forget gate biased by +1) and the previous cell [..., F]."""
    o, f, i, g = jnp.split(pre, 4, axis=-1)
    c = jax.nn.sigmoid(f + 1.0) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
    return jax.nn.sigmoid(o) * jnp.tanh(c), c


class PixelRNN(nn.Module):
    """The Row LSTM or the Diagonal BiLSTM (``kind``) with Bernoulli or mixture outputs.

    Attributes:
      outputs: parameters per pixel.
      kind: "row_lstm" or "diagonal_bilstm".
      features: units of each LSTM; the residual stream between layers has twice as many.
      num_layers: LSTM layers after the 7x7 masked convolution.
      head: width of the 1x1 output layer.
      num_classes: > 0 adds a per-layer class bias of the gates (class-conditional).
      unroll: iterations of each scan unrolled per loop trip.
      state_conv: the state-to-state step as an XLA convolution instead of a matmul.
    """

    outputs: int
    kind: str = "diagonal_bilstm"
    features: int = 32
    num_layers: int = 4
    head: int = 64
    num_classes: int = 0
    unroll: int = 1
    state_conv: bool = False

    def setup(self):
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {self.kind!r}.")
        f, n, row = self.features, self.num_layers, self.kind == "row_lstm"
        self.first = MaskedConv(2 * f, (7, 7), "A")
        directions = ("fwd",) if row else ("fwd", "bwd")
        taps = len(_ROW_TAPS if row else _DIAGONAL_TAPS)
        init = nn.initializers.lecun_normal(in_axis=(0, 1), out_axis=2)
        # input-to-state: a 1 x 3 convolution masked to columns j - 1, j (Row LSTM), a 1x1
        # on the skewed map (Diagonal BiLSTM)
        self.to_gates = {d: [ShiftedConv(4 * f, (1, 2), right=True) if row else Dense(4 * f)
                             for _ in range(n)] for d in directions}
        self.state_kernels = {d: [self.param(f"state_{d}_{i}", init, (taps, f, 4 * f))
                                  for i in range(n)] for d in directions}
        self.pixel_gates = None if row else Dense(4 * f)
        self.class_gates = {d: [nn.Embed(self.num_classes, 4 * f) for _ in range(n)]
                            for d in (directions if self.num_classes else ())}
        self.residuals = [Dense(2 * f) for _ in range(n)]
        self.hidden, self.out = Dense(self.head), Dense(self.outputs)

    def _gates(self, direction: str, layer: int, x: jax.Array, labels,
               pixels: jax.Array | None = None) -> jax.Array:
        """Input-to-state pre-activations [B, R, W, 4F] of rows ``x``, with the class bias
        (and a 1x1 of the image ``pixels`` at the same positions, when given)."""
        g = self.to_gates[direction][layer](x)
        if pixels is not None:
            g = g + self.pixel_gates(pixels)
        if self.num_classes:
            g = g + self.class_gates[direction][layer](labels)[:, None, None].astype(g.dtype)
        return g

    def _state_step(self, direction: str, layer: int):
        """``state(h)``: the layer's state-to-state term of the states ``h`` [B, N, F] (along
        a row for the Row LSTM, along a skewed column for the Diagonal BiLSTM)."""
        offsets = _ROW_TAPS if self.kind == "row_lstm" else _DIAGONAL_TAPS
        kernel, conv = self.state_kernels[direction][layer], self.state_conv
        return lambda h: state_to_state(h, kernel, offsets, conv)

    def _row_lstm(self, layer: int, x: jax.Array, labels) -> tuple[jax.Array, jax.Array]:
        """(h, c) [B, H, W, F] of a Row LSTM layer over the whole image, row after row."""
        gates = jnp.moveaxis(self._gates("fwd", layer, x, labels), 1, 0)
        state = self._state_step("fwd", layer)

        def step(carry, g):
            h, c = lstm_cell(g + state(carry[0]), carry[1])
            return (h, c), (h, c)

        zeros = jnp.zeros(gates.shape[1:-1] + (self.features,), gates.dtype)
        _, (hs, cs) = jax.lax.scan(step, (zeros, zeros), gates, unroll=self.unroll)
        return jnp.moveaxis(hs, 0, 1), jnp.moveaxis(cs, 0, 1)

    def _diagonal_lstm(self, direction: str, layer: int, x: jax.Array, labels,
                       pixels: jax.Array | None = None) -> jax.Array:
        """h [B, H, W, F] of one direction of a Diagonal BiLSTM layer: the mirrored image
        for "bwd" (mirrored back), the skewed map's columns one after another. States off
        the image (the skew's padding) are held at zero, so the first pixel of a row and
        the first row start from zero, as in the one-row form of `rows`."""
        width = x.shape[2]
        if direction == "bwd":
            x, pixels = x[:, :, ::-1], None if pixels is None else pixels[:, :, ::-1]
        gates = skew(self._gates(direction, layer, x, labels, pixels))
        valid = skew(jnp.ones((1, *x.shape[1:3], 1), gates.dtype))[0, :, :, 0]  # [H, H+W-1]
        state = self._state_step(direction, layer)

        def step(carry, inputs):
            g, v = inputs
            h, c = lstm_cell(g + state(carry[0]), carry[1])
            h, c = h * v[None, :, None], c * v[None, :, None]
            return (h, c), h

        zeros = jnp.zeros((x.shape[0], x.shape[1], self.features), gates.dtype)
        _, hs = jax.lax.scan(step, (zeros, zeros), (jnp.moveaxis(gates, 2, 0), valid.T),
                             unroll=self.unroll)
        h = unskew(jnp.moveaxis(hs, 0, 2), width)
        return h[:, :, ::-1] if direction == "bwd" else h

    def _layers(self, image: jax.Array, labels) -> tuple[jax.Array, list]:
        """The residual stream after every layer, and each layer's row-above state for
        `context`."""
        x, above = self.first(image), []
        for i in range(self.num_layers):
            if self.kind == "row_lstm":
                h, c = self._row_lstm(i, x, labels)
                above.append({"h": shift_down(h), "c": shift_down(c)})
            else:
                fwd = self._diagonal_lstm("fwd", i, x, labels)
                pixels = image if i == 0 else None
                bwd = shift_down(self._diagonal_lstm("bwd", i, x, labels, pixels))
                above.append({"h": shift_down(fwd), "bwd": bwd})
                h = fwd + bwd
            x = x + self.residuals[i](h)
        return x, above

    def _head(self, x: jax.Array) -> jax.Array:
        return self.out(nn.relu(self.hidden(nn.relu(x))))

    def context(self, x: jax.Array, labels: jax.Array | None = None) -> dict:
        """What row i needs from the rows above, as maps [B, H, W, ...] (row i holds it)."""
        return {"first": self.first(x, part="above"), "layers": self._layers(x, labels)[1]}

    def _row_forward(self, layer: int, line: jax.Array, h_above: jax.Array, labels) -> jax.Array:
        """The Diagonal BiLSTM's left-to-right h [B, 1, W, F] on one row ``line`` from the
        row above's h: a scan along the row (state from the left and from above)."""
        gates = jnp.moveaxis(self._gates("fwd", layer, line, labels)[:, 0], 1, 0)  # [W, B, 4F]
        kernel = self.state_kernels["fwd"][layer].astype(gates.dtype)

        def step(carry, inputs):
            g, up = inputs
            pre = g + up @ kernel[0] + carry[0] @ kernel[1]
            h, c = lstm_cell(pre, carry[1])
            return (h, c), h

        zeros = jnp.zeros((line.shape[0], self.features), gates.dtype)
        _, hs = jax.lax.scan(step, (zeros, zeros), (gates, jnp.moveaxis(h_above[:, 0], 1, 0)),
                             unroll=self.unroll)
        return jnp.moveaxis(hs, 0, 1)[:, None]

    def rows(self, line: jax.Array, context: dict, labels: jax.Array | None = None) -> jax.Array:
        """Outputs [B, 1, W, outputs] for one image row ``line`` [B, 1, W, C] given its
        `context` row."""
        x = self.first(line, part="row") + context["first"]
        for i, above in enumerate(context["layers"]):
            if self.kind == "row_lstm":
                state = self._state_step("fwd", i)(above["h"][:, 0])
                h = lstm_cell(self._gates("fwd", i, x, labels)[:, 0] + state, above["c"][:, 0])[0]
                h = h[:, None]
            else:
                h = self._row_forward(i, x, above["h"], labels) + above["bwd"]
            x = x + self.residuals[i](h)
        return self._head(x)

    def __call__(self, x: jax.Array, labels: jax.Array | None = None) -> jax.Array:
        return self._head(self._layers(x, labels)[0])
