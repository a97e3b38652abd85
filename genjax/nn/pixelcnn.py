"""Autoregressive image models: masked and shifted convolutions, PixelCNN (van den Oord et
al. 2016a), Gated PixelCNN without the blind spot (van den Oord et al. 2016b) and the
PixelCNN++ network (Salimans et al. 2017).

Every network maps images [B, H, W, C] to per-pixel distribution parameters [B, H, W, P]
whose value at pixel (i, j) depends only on the pixels before it in raster order (rows
above, then columns to the left). Channels of one pixel are modelled by the likelihood
(`genjax.losses.pixelcnn`), not by channel masks: Bernoulli pixels are independent given
the past, and the discretised logistic mixture makes each channel's mean depend linearly
on the channels before it (the PixelCNN++ scheme).

Causality comes from where a kernel can reach, not from multiplying weights by zeros
alone: a masked k x k kernel only has non-zero taps in its top k//2 + 1 rows, so the
convolution runs on those rows with the padding that keeps its centre on the pixel (the
same function as the full masked convolution at about 4/7 of its arithmetic for 7x7).
The tests differentiate every output pixel with respect to every input pixel to prove
the receptive fields.
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from genjax.nn.layers import Dense

MASK_TYPES = ("A", "B")
_DIMS = ("NHWC", "HWIO", "NHWC")


def causal_mask(kh: int, kw: int, mask_type: str) -> np.ndarray:
    """[kh, kw] taps a masked kernel keeps: every row above the centre, the centre row left
    of the centre, and the centre itself for type B (type A, the first layer, must not see
    the pixel it predicts)."""
    if mask_type not in MASK_TYPES:
        raise ValueError(f"mask_type must be 'A' or 'B', got {mask_type!r}.")
    mask = np.zeros((kh, kw), np.float32)
    mask[:kh // 2] = 1.0
    mask[kh // 2, :kw // 2 + (mask_type == "B")] = 1.0
    return mask


def _conv(x: jax.Array, kernel: jax.Array, pads: Sequence[tuple[int, int]]) -> jax.Array:
    return jax.lax.conv_general_dilated(x, kernel.astype(x.dtype), (1, 1), tuple(pads),
                                        dimension_numbers=_DIMS)


def shift_down(x: jax.Array) -> jax.Array:
    """Move a feature map one row down (zeros enter at the top): row i then holds what
    row i - 1 held, so it depends only on rows above i."""
    return jnp.pad(x, ((0, 0), (1, 0), (0, 0), (0, 0)))[:, :-1]


def shift_right(x: jax.Array) -> jax.Array:
    """Move a feature map one column right (zeros enter at the left)."""
    return jnp.pad(x, ((0, 0), (0, 0), (1, 0), (0, 0)))[:, :, :-1]


class MaskedConv(nn.Module):
    """A k x k convolution whose kernel is masked by `causal_mask` (PixelCNN). The
    parameters are Flax's (``kernel`` [kh, kw, in, out], ``bias``); the taps below the
    centre row are never used, so only the top kh//2 + 1 rows are convolved."""

    features: int
    kernel_size: tuple[int, int] = (3, 3)
    mask_type: str = "B"

    @nn.compact
    def __call__(self, x: jax.Array, part: str = "all") -> jax.Array:
        """The convolution of ``x``; ``part="above"`` keeps only the taps in rows above the
        centre (row i's output then depends on rows above i alone) and ``part="row"`` only
        the centre row's and the bias (each row of ``x`` on its own: a sampler's one row),
        which add up to ``"all"``."""
        kh, kw = self.kernel_size
        kernel = self.param("kernel", nn.initializers.lecun_normal(),
                            (kh, kw, x.shape[-1], self.features))
        bias = self.param("bias", nn.initializers.zeros, (self.features,))
        mask = causal_mask(kh, kw, self.mask_type)[:, :, None, None]
        c, cols = kh // 2, (kw // 2, kw // 2)
        if part == "above":  # rows i - c .. i - 1 = rows i - c + 1 .. i of the shifted map
            return _conv(shift_down(x), kernel[:c] * mask[:c], ((c - 1, 0), cols))
        if part == "row":
            y = _conv(x, kernel[c:c + 1] * mask[c:c + 1], ((0, 0), cols))
        elif part == "all":
            y = _conv(x, kernel[:c + 1] * mask[:c + 1], ((c, 0), cols))
        else:
            raise ValueError(f"part must be 'all', 'above' or 'row', got {part!r}.")
        return y + bias.astype(y.dtype)


class ShiftedConv(nn.Module):
    """A convolution that only looks up and, optionally, left (PixelCNN++'s
    ``down_shifted_conv2d`` / ``down_right_shifted_conv2d``, and the Gated PixelCNN's
    vertical and horizontal stacks): output (i, j) sees rows i - kh + 1 .. i and columns
    j - kw//2 .. j + kw//2 (``right=False``) or j - kw + 1 .. j (``right=True``)."""

    features: int
    kernel_size: tuple[int, int] = (2, 3)
    right: bool = False
    kernel_init: nn.initializers.Initializer = nn.initializers.lecun_normal()

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        kh, kw = self.kernel_size
        kernel = self.param("kernel", self.kernel_init, (kh, kw, x.shape[-1], self.features))
        bias = self.param("bias", nn.initializers.zeros, (self.features,))
        cols = (kw - 1, 0) if self.right else (kw // 2, (kw - 1) // 2)
        return _conv(x, kernel, ((kh - 1, 0), cols)) + bias.astype(x.dtype)


def gate(x: jax.Array) -> jax.Array:
    """tanh(a) * sigmoid(b) of the two channel halves of ``x`` (the gated activation)."""
    a, b = jnp.split(x, 2, axis=-1)
    return jnp.tanh(a) * jax.nn.sigmoid(b)


class PixelCNN(nn.Module):
    """The plain PixelCNN: a 7x7 type-A masked convolution, residual blocks of 3x3 type-B
    masked convolutions, and 1x1 layers to ``outputs`` parameters per pixel. Stacked 3x3
    masks leave a blind spot: pixels up and to the right that no output ever sees (the
    tests show it).

    Attributes:
      outputs: parameters per pixel (C Bernoulli logits, or the mixture's).
      features: width of every hidden layer.
      num_layers: 3x3 masked layers after the first.
      head: width of the 1x1 output layer.
      num_classes: > 0 adds a per-layer class embedding (a class-conditional model).
    """

    outputs: int
    features: int = 64
    num_layers: int = 7
    head: int = 256
    num_classes: int = 0

    @property
    def rows_above(self) -> int:
        """Rows above a pixel that its outputs can see: 3 through the 7x7 layer and one
        more through each 3x3 layer (the sampler's window)."""
        return 7 // 2 + self.num_layers

    @nn.compact
    def __call__(self, x: jax.Array, labels: jax.Array | None = None) -> jax.Array:
        h = MaskedConv(self.features, (7, 7), "A")(x)
        for _ in range(self.num_layers):
            y = MaskedConv(self.features, (3, 3), "B")(nn.relu(h))
            h = h + _class_bias(y, labels, self.num_classes)
        h = nn.relu(Dense(self.head)(nn.relu(h)))
        return Dense(self.outputs)(h)


def _class_bias(h: jax.Array, labels: jax.Array | None, num_classes: int) -> jax.Array:
    """``h`` plus a learned per-class bias of its channels (class conditioning)."""
    if not num_classes:
        return h
    return h + nn.Embed(num_classes, h.shape[-1])(labels)[:, None, None, :].astype(h.dtype)


class GatedPixelCNN(nn.Module):
    """Gated PixelCNN (van den Oord et al. 2016b): vertical and horizontal stacks of gated
    tanh * sigmoid units, residual connections in the horizontal stack, skip connections
    from every layer to the output, and optional class conditioning (a learned bias of
    every gate per class).

    The vertical stack sees the rows up to the current one ((k//2 + 1) x k kernels); the
    horizontal stack sees the current row up to the current column (1 x (k//2 + 1)) plus,
    through a 1x1 link, the vertical stack moved one row down, so together they cover every
    earlier pixel of the receptive field (no blind spot). The first layer (k = 7) moves the
    image one column right before its horizontal convolution, so the pixel itself stays
    hidden (mask A).

    The network splits in two for sampling: `context` (the vertical stack's links; row i
    only depends on rows above i) and `rows` (the horizontal stack, row by row). A sampler
    computes the context once per image row and then reruns only that row's horizontal
    stack per pixel, which gives the same outputs as ``__call__`` = ``rows(x, context(x))``.

    Attributes:
      outputs: parameters per pixel.
      features: channels of each stack.
      num_layers: gated layers (the first is 7 wide, the others 3).
      head: width of the skip sum and the 1x1 output layer.
      num_classes: > 0: class-conditional.
    """

    outputs: int
    features: int = 64
    num_layers: int = 8
    head: int = 256
    num_classes: int = 0

    def setup(self):
        p, sizes = self.features, [7] + [3] * (self.num_layers - 1)
        self.vertical = [ShiftedConv(2 * p, (k // 2 + 1, k)) for k in sizes]
        self.horizontal = [ShiftedConv(2 * p, (1, k // 2 + 1), right=True) for k in sizes]
        self.links = [Dense(2 * p) for _ in sizes]
        self.residuals = [Dense(p) for _ in sizes]
        self.skips = [Dense(self.head) for _ in sizes]
        classes = sizes if self.num_classes else []
        self.v_classes = [nn.Embed(self.num_classes, 2 * p) for _ in classes]
        self.h_classes = [nn.Embed(self.num_classes, 2 * p) for _ in classes]
        self.last, self.hidden = Dense(self.head), Dense(self.head)
        self.out = Dense(self.outputs)

    def _class(self, tables: list, layer: int, labels: jax.Array | None) -> jax.Array | float:
        """Layer ``layer``'s bias of the gate for each image's class (0 if unconditional)."""
        return tables[layer](labels)[:, None, None, :] if self.num_classes else 0.0

    def context(self, x: jax.Array, labels: jax.Array | None = None) -> jax.Array:
        """[layers, B, H, W, 2 features]: what each layer's horizontal stack takes from the
        vertical one, the vertical pre-activation moved one row down through a 1x1."""
        v, links = x, []
        for i in range(self.num_layers):
            pre = self.vertical[i](v)
            links.append(self.links[i](shift_down(pre)))
            v = gate(pre + self._class(self.v_classes, i, labels))
        return jnp.stack(links)

    def rows(self, x: jax.Array, context: jax.Array, labels: jax.Array | None = None
             ) -> jax.Array:
        """Outputs [B, R, W, outputs] for image rows ``x`` [B, R, W, C] given their
        `context` rows [layers, B, R, W, 2 features] (any R: rows are independent here)."""
        h, skip = x, 0.0
        for i in range(self.num_layers):
            pre = self.horizontal[i](shift_right(h) if i == 0 else h) + context[i]
            gated = gate(pre + self._class(self.h_classes, i, labels))
            h = self.residuals[i](gated) + (h if i else 0.0)
            skip = skip + self.skips[i](gated)
        return self.out(nn.relu(self.hidden(nn.relu(skip + self.last(h)))))

    def __call__(self, x: jax.Array, labels: jax.Array | None = None) -> jax.Array:
        return self.rows(x, self.context(x, labels), labels)


def concat_elu(x: jax.Array) -> jax.Array:
    """ELU of [x, -x] along the channels (PixelCNN++'s nonlinearity)."""
    return nn.elu(jnp.concatenate([x, -x], axis=-1))


def _conv_rows(conv: nn.Module, x: jax.Array, above: jax.Array | None) -> jax.Array:
    """``conv`` (a 2-row shifted convolution) of rows ``x``; with ``above`` (the row above
    them, [B, 1, W, C]) instead of the zero padding, which makes one row's output exact."""
    if above is None:
        return conv(x)
    return conv(jnp.concatenate([above, x], axis=1))[:, 1:]


class GatedResnet(nn.Module):
    """PixelCNN++'s gated residual block: x + a * sigmoid(b), where [a, b] is a shifted
    convolution of concat_elu(a shifted convolution of concat_elu(x), plus a 1x1 of the
    auxiliary input), with an optional class bias. Returns the block's output and the
    inputs of its two convolutions; ``above`` gives those inputs' row above (one-row
    evaluation of the down-right stream while sampling)."""

    right: bool = False
    num_classes: int = 0

    @nn.compact
    def __call__(self, x: jax.Array, aux: jax.Array | None, labels: jax.Array | None,
                 above: tuple[jax.Array, jax.Array] | None = None):
        c = x.shape[-1]
        size = (2, 2) if self.right else (2, 3)
        first = concat_elu(x)
        y = _conv_rows(ShiftedConv(c, size, self.right), first, above and above[0])
        if aux is not None:
            y = y + Dense(c)(concat_elu(aux))
        second = concat_elu(y)
        y = _conv_rows(ShiftedConv(2 * c, size, self.right, kernel_init=nn.initializers.zeros),
                       second, above and above[1])
        a, b = jnp.split(_class_bias(y, labels, self.num_classes), 2, axis=-1)
        return x + a * jax.nn.sigmoid(b), (first, second)


class PixelCNNPP(nn.Module):
    """The PixelCNN++ network (Salimans et al. 2017) at one resolution: a "down" stream u
    that sees the rows above and a "down-right" stream ul that also sees the current row to
    the left, each a stack of gated residual blocks with concat_elu, ul taking u as its
    auxiliary input; on the way back each block also takes the matching block of the way
    down (the paper's skip connections). The paper halves the resolution twice for 32x32
    images; at 28x28 with few layers this net keeps one resolution.

    For sampling it splits like `GatedPixelCNN`: `context` holds what row i needs from the
    rows above (the u stream, which only sees them, and, for every convolution of the ul
    stream, its input one row up); `rows` runs the ul stream on one row from it.
    ``__call__`` is the one full pass of training.

    Attributes:
      outputs: mixture parameters per pixel.
      features: channels of both streams.
      num_blocks: gated residual blocks on each of the two passes.
      num_classes: > 0: class-conditional.
    """

    outputs: int
    features: int = 64
    num_blocks: int = 4
    num_classes: int = 0

    def setup(self):
        f, k, n = self.features, self.num_classes, 2 * self.num_blocks
        self.u_first = ShiftedConv(f, (2, 3))
        self.ul_up, self.ul_left = ShiftedConv(f, (1, 3)), ShiftedConv(f, (2, 1), right=True)
        self.u_blocks = [GatedResnet(False, k) for _ in range(n)]
        self.ul_blocks = [GatedResnet(True, k) for _ in range(n)]
        self.out = Dense(self.outputs)

    def _u_stream(self, x: jax.Array, labels) -> list[jax.Array]:
        """u after its first layer and after each block (it sees only the rows above)."""
        us = [shift_down(self.u_first(x))]
        for i in range(self.num_blocks):
            us.append(self.u_blocks[i](us[-1], None, labels)[0])
        for i in range(self.num_blocks):
            skip = us[self.num_blocks - i]
            us.append(self.u_blocks[self.num_blocks + i](us[-1], skip, labels)[0])
        return us

    def _ul_stream(self, x: jax.Array, us: list[jax.Array], labels, above: list | None = None):
        """(parameters per pixel, the inputs of the ul convolutions) for rows ``x`` given
        u at those rows; ``above``: those inputs' rows above (one-row mode)."""
        nb, rows_above = self.num_blocks, iter(above or [])
        x_above = next(rows_above, None)
        up = self.ul_up(shift_down(x) if x_above is None else x_above)
        ul = up + shift_right(_conv_rows(self.ul_left, x, x_above))
        inputs, saved = [x], [ul]
        for i in range(2 * nb):
            aux = us[i + 1] if i < nb else jnp.concatenate([us[i + 1], saved[2 * nb - i]], -1)
            pair = (next(rows_above), next(rows_above)) if above else None
            ul, convs = self.ul_blocks[i](ul, aux, labels, pair)
            inputs.extend(convs)
            saved.append(ul)
        return self.out(nn.elu(ul)), inputs

    def context(self, x: jax.Array, labels: jax.Array | None = None) -> dict:
        """What each row needs from the rows above: u, and the ul convolutions' inputs
        moved one row down (row i holds row i - 1)."""
        us = self._u_stream(x, labels)
        _, inputs = self._ul_stream(x, us, labels)
        return {"u": us, "above": [shift_down(t) for t in inputs]}

    def rows(self, x: jax.Array, context: dict, labels: jax.Array | None = None) -> jax.Array:
        """Outputs for one image row ``x`` [B, 1, W, C] from its `context` row."""
        return self._ul_stream(x, context["u"], labels, context["above"])[0]

    def __call__(self, x: jax.Array, labels: jax.Array | None = None) -> jax.Array:
        return self._ul_stream(x, self._u_stream(x, labels), labels)[0]
