"""Exact fast replacements for Flax's strided (transposed) convolutions, and `Dense` for
per-pixel layers on feature maps (a 2-D matrix product; see its docstring).

On XLA:CPU the gradient of a strided transposed convolution is several times slower
than that of a stride-1 convolution of the same arithmetic (measured on 2 cores,
4x4/stride 2, 7x7x128 -> 14x14x128, batch 64: 658 ms for Flax's layer, 100 ms here). Output phase
(y mod s) of a stride-s transposed convolution only sees the kernel taps of one
residue class, so one stride-1 convolution with s*s*F outputs (the "sub-pixel"
kernel, gathered from the original one) followed by depth-to-space gives every
phase at once (Shi et al. 2016), exactly.

`ConvTranspose` is named like Flax's and declares the same parameters (``kernel``
with Flax's shape, ``bias``) with the same initialisers, so parameter trees, initial
values and checkpoints are interchangeable with `flax.linen.ConvTranspose`. It covers
2-D, undilated layers with 'SAME' or 'VALID' padding, which is what genjax uses.

The input gradient of a strided convolution is the same kind of op (a correlation of the
dilated cotangent), so `Conv` gives strided convolutions a custom VJP that computes it
the sub-pixel way too; differentiating that again (WGAN-GP's penalty) then only meets
stride-1 convolutions. (Space-to-depth, the other mirror trick, was slower here.)
"""

from __future__ import annotations

import functools
import math
from typing import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

_DIMS = ("NHWC", "HWIO", "NHWC")


def _transpose_pad_before(k: int, s: int, padding: str) -> int:
    """Leading padding of the dilated input in ``lax.conv_transpose`` (its own rule)."""
    if padding == "SAME":
        return k - 1 if s > k - 1 else math.ceil((k + s - 2) / 2)
    if padding == "VALID":
        return k - 1
    raise ValueError(f"padding must be 'SAME' or 'VALID', got {padding!r}.")


def _transpose_size(n: int, k: int, s: int, padding: str) -> int:
    """Output length of ``lax.conv_transpose`` along one axis."""
    return n * s if padding == "SAME" else n * s + max(k - s, 0)


def _subpixel_taps(k: int, s: int, pad: int) -> tuple[np.ndarray, np.ndarray]:
    """For one axis: per phase, its kernel taps (k = none) and the input offset of the first.

    Output y = s*m + r of the transposed convolution is sum_t x[m + d] K[t] over the
    taps t with (r + t - pad) divisible by s, where d = (r + t - pad) / s. Each phase
    has at most ceil(k / s) taps at consecutive offsets starting at ``start[r]``.
    """
    width = -(-k // s)
    table = np.full((s, width), k, np.int32)
    start = np.zeros(s, np.int32)
    for r in range(s):
        taps = [t for t in range(k) if (r + t - pad) % s == 0]
        if taps:  # with s > k some phases see no tap at all: their outputs are zero
            start[r] = (r + taps[0] - pad) // s
            table[r, :len(taps)] = taps
    return table, start


def _subpixel(x: jax.Array, kernel: jax.Array, strides: Sequence[int], pad_before: Sequence[int],
              out_size: Sequence[int]) -> jax.Array:
    """The stride-s correlation of ``x`` dilated by s (``lax.conv_general_dilated`` with
    ``lhs_dilation=strides``), ``pad_before`` zeros in front, cropped or zero-extended to
    ``out_size``, as s*s stride-1 convolutions (one per output phase) and depth-to-space.

    Output phase (r_y, r_x) sees only the kernel taps of its residue class (at most
    ceil(k/s) per axis), shifted by the phase's first input offset through its padding.
    """
    (kh, kw, _, cout), (sh, sw) = kernel.shape, strides
    b, h, w, _ = x.shape
    out_h, out_w = out_size
    my, mx = -(-out_h // sh), -(-out_w // sw)  # outputs per phase
    ty, sy = _subpixel_taps(kh, sh, pad_before[0])
    tx, sx = _subpixel_taps(kw, sw, pad_before[1])
    padded = jnp.pad(kernel, ((0, 1), (0, 1), (0, 0), (0, 0)))  # index k: a zero tap
    ky, kx = ty.shape[1], tx.shape[1]
    rows = []
    for ry in range(sh):
        cols = []
        for rx in range(sw):
            sub = padded[ty[ry][:, None], tx[rx][None, :]]  # [ky, kx, cin, cout]
            pads = [(-sy[ry], my + ky - 1 - h + sy[ry]), (-sx[rx], mx + kx - 1 - w + sx[rx])]
            cols.append(jax.lax.conv_general_dilated(x, sub, (1, 1), pads, dimension_numbers=_DIMS))
        rows.append(jnp.stack(cols, axis=3))  # [b, my, mx, sw, cout]
    y = jnp.stack(rows, axis=2)               # [b, my, sh, mx, sw, cout]
    return y.reshape(b, my * sh, mx * sw, cout)[:, :out_h, :out_w]


def conv_transpose(x: jax.Array, kernel: jax.Array, strides: Sequence[int], padding: str = "SAME"
                   ) -> jax.Array:
    """``lax.conv_transpose(x, kernel, strides, padding)`` (NHWC, HWIO) via sub-pixel convolution."""
    if tuple(strides) == (1, 1):  # nothing to split: the stock op is already a plain conv
        return jax.lax.conv_transpose(x, kernel, (1, 1), padding, dimension_numbers=_DIMS)
    shape = zip(x.shape[1:3], kernel.shape[:2], strides)
    pad_before = [_transpose_pad_before(k, s, padding) for _, k, s in shape]
    sizes = [_transpose_size(n, k, s, padding)
             for n, k, s in zip(x.shape[1:3], kernel.shape[:2], strides)]
    return _subpixel(x, kernel, strides, pad_before, sizes)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _strided_conv(x: jax.Array, kernel: jax.Array, strides: tuple, pads: tuple) -> jax.Array:
    return jax.lax.conv_general_dilated(x, kernel, strides, pads, dimension_numbers=_DIMS)


def _strided_conv_fwd(x, kernel, strides, pads):
    return _strided_conv(x, kernel, strides, pads), (x, kernel)


def _strided_conv_bwd(strides, pads, residuals, ct):
    """The input gradient as a sub-pixel correlation of the cotangent with the flipped
    kernel (stride-1 convolutions, so that a penalty's double backward stays fast); the
    kernel gradient as XLA derives it."""
    x, kernel = residuals
    flipped = kernel[::-1, ::-1].swapaxes(2, 3)
    pad_before = [k - 1 - lo for k, (lo, _) in zip(kernel.shape[:2], pads)]
    dx = _subpixel(ct, flipped, strides, pad_before, x.shape[1:3])
    _, kernel_vjp = jax.vjp(lambda k: jax.lax.conv_general_dilated(
        x, k, strides, pads, dimension_numbers=_DIMS), kernel)
    return dx, kernel_vjp(ct)[0]


_strided_conv.defvjp(_strided_conv_fwd, _strided_conv_bwd)


def conv_general_dilated(lhs: jax.Array, rhs: jax.Array, window_strides: Sequence[int],
                         padding, lhs_dilation=None, rhs_dilation=None, dimension_numbers=None,
                         feature_group_count: int = 1, precision=None, **kwargs) -> jax.Array:
    """``lax.conv_general_dilated`` whose input gradient, for a strided 2-D NHWC/HWIO
    convolution, is computed by sub-pixel convolution (`_subpixel`) instead of XLA's
    dilated convolution. Same values; on XLA:CPU the second derivative of the textbook
    critic (WGAN-GP's penalty, batch 64) took 255 ms through XLA's form and 44 ms this
    way (2 cores, Eigen dots).
    Anything else (dilation, groups, stride 1, other layouts) is passed to lax unchanged."""
    plain = (lhs.ndim != 4 or tuple(window_strides) == (1, 1) or feature_group_count != 1
             or kwargs or any(d not in (None, (1, 1), [1, 1]) for d in (lhs_dilation, rhs_dilation))
             or jax.lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers)
             != jax.lax.conv_dimension_numbers(lhs.shape, rhs.shape, _DIMS))
    if plain:
        return jax.lax.conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation,
                                            rhs_dilation, dimension_numbers, feature_group_count,
                                            precision=precision, **kwargs)
    if isinstance(padding, str):
        padding = jax.lax.padtype_to_pads(lhs.shape[1:3], rhs.shape[:2], window_strides, padding)
    pads = tuple(tuple(int(p) for p in pair) for pair in padding)
    return _strided_conv(lhs, rhs, tuple(window_strides), pads)


def lecun_normal_matrix(key: jax.Array, shape: Sequence[int], dtype=jnp.float32) -> jax.Array:
    """Flax's default kernel initialiser drawn on the (fan_in, fan_out) matrix view.

    Bitwise the same values as ``nn.initializers.lecun_normal()`` on the full shape, but
    XLA:CPU compiles the truncated normal of a 4-D shape about 4x slower (1.5 s per conv
    kernel), which dominated the start-up of every conv model.
    """
    matrix = (int(np.prod(shape[:-1])), shape[-1])
    return nn.initializers.lecun_normal()(key, matrix, dtype).reshape(shape)


Conv = functools.partial(nn.Conv, kernel_init=lecun_normal_matrix,
                         conv_general_dilated=conv_general_dilated)
"""`flax.linen.Conv` with the same parameters and initial values, faster to initialise, and
strided convolutions differentiated through `conv_general_dilated`'s sub-pixel input gradient."""

StockConv = functools.partial(nn.Conv, kernel_init=lecun_normal_matrix)
"""`flax.linen.Conv` differentiated by XLA (the comparison for ``fast=False``)."""


class ConvTranspose(nn.Module):
    """Drop-in for `flax.linen.ConvTranspose` (2-D, 'SAME'/'VALID'), computed as sub-pixel conv."""

    features: int
    kernel_size: Sequence[int]
    strides: Sequence[int] = (1, 1)
    padding: str = "SAME"
    use_bias: bool = True
    kernel_init: nn.initializers.Initializer = lecun_normal_matrix
    bias_init: nn.initializers.Initializer = nn.initializers.zeros_init()

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        shape = (*self.kernel_size, x.shape[-1], self.features)
        kernel = self.param("kernel", self.kernel_init, shape, jnp.float32)
        y = conv_transpose(x, kernel.astype(x.dtype), self.strides, self.padding)
        if self.use_bias:
            y = y + self.param("bias", self.bias_init, (self.features,), jnp.float32).astype(x.dtype)
        return y


class Dense(nn.Module):
    """Drop-in for `flax.linen.Dense` (same ``kernel`` [in, out] and ``bias``, same
    initialisers) that multiplies as one 2-D matrix product: [..., in] is flattened to
    [N, in] first. On XLA:CPU the gradient of Flax's dot over a [B, H, W, C] feature map
    (a contraction over three axes) ran 1.7x slower than the 2-D product's (2 cores,
    64x28x28x64 -> 64: 21.4 against 12.7 ms), which per-pixel layers pay in every block."""

    features: int
    kernel_init: nn.initializers.Initializer = nn.initializers.lecun_normal()
    bias_init: nn.initializers.Initializer = nn.initializers.zeros_init()

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        kernel = self.param("kernel", self.kernel_init, (x.shape[-1], self.features), jnp.float32)
        bias = self.param("bias", self.bias_init, (self.features,), jnp.float32)
        y = x.reshape(-1, x.shape[-1]) @ kernel.astype(x.dtype) + bias.astype(x.dtype)
        return y.reshape(*x.shape[:-1], self.features)


def conv_transpose_layer(fast: bool) -> type[nn.Module]:
    """The transposed-convolution class to build with: exact sub-pixel (fast) or Flax's own."""
    return ConvTranspose if fast else nn.ConvTranspose


def conv_layer(fast: bool) -> Callable[..., nn.Module]:
    """The convolution to build with: `Conv` (fast) or `StockConv`; same parameters."""
    return Conv if fast else StockConv


def sides_dividing_by(factor: int, shape: Sequence[int]) -> str | None:
    """What a network whose strides multiply to ``factor`` takes (n stride-2 layers: 2^n),
    in words, when ``shape`` is not such an image; None when it is. The networks' ``*_takes``
    functions build on it, so their modules and the tasks' checks say the same thing."""
    if len(shape) == 3 and min(shape[:2]) >= factor and shape[0] % factor == shape[1] % factor == 0:
        return None
    return (f"images [H, W, C] whose height and width divide by {factor} "
            f"({', '.join(str(k * factor) for k in range(1, 4))}, ...)")


def check_takes(net: str, takes: str | None, shape: Sequence[int]) -> None:
    """Raise ``ValueError`` when a ``*_takes`` function found ``shape`` does not fit ``net``
    (``takes`` is not None): the modules' own guard, for callers outside the tasks (which
    name the config field instead, `genjax.tasks.common.check_image_shape`)."""
    if takes is not None:
        raise ValueError(f"{net} takes {takes}, got shape {tuple(shape)}.")
