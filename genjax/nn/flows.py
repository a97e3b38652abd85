"""Normalizing flows: bijectors with exact log-determinants, and the RealNVP (Dinh et al.
2017) and Glow (Kingma & Dhariwal 2018) multi-scale networks built from them.

Every bijector is a Flax module with two methods,

  ``forward(x) -> (y, log_det)``   log_det [B] = log |det dy/dx| per example,
  ``inverse(y) -> (x, log_det)``   log_det [B] = log |det dx/dy| (minus the forward one),

so that ``inverse(forward(x)[0])[0] == x``. Data flow in the direction of ``forward``
(x: data -> z: noise). Call them as pure functions with
``module.apply({"params": params}, x, method="forward")`` (or `bijector_fns`).

ActNorm's data-dependent initialisation is explicit: `data_init` runs the forward pass
once on a batch with the ``data_init`` collection mutable, in which every ActNorm
records the shift and scale that give its input zero mean and unit variance per
channel (and uses them, so the layers after it see normalised inputs), and returns the
parameters with those values put in. No module holds an "initialised" flag.
"""

from __future__ import annotations

from typing import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from genjax.nn import layers

MASKS = ("checkerboard", "channel")
KINDS = ("realnvp", "glow")
COUPLINGS = ("affine", "spline")
DATA_INIT = "data_init"  # the collection ActNorm writes its data-dependent values to


def per_example_sum(a: jax.Array) -> jax.Array:
    """Sum over every axis but the first: [B, ...] -> [B]."""
    return a.reshape(a.shape[0], -1).sum(-1)


def _positions(x: jax.Array) -> int:
    """Pixels per example of a [B, ..., C] array (1 for [B, C] points)."""
    return int(np.prod(x.shape[1:-1]))


class ActNorm(nn.Module):
    """y = (x + loc) * exp(log_scale), per channel (the last axis): Glow's activation
    normalisation. ``loc`` and ``log_scale`` start at 0 (the identity) and are set from
    data by `data_init`."""

    channels: int

    def setup(self):
        self.loc = self.param("loc", nn.initializers.zeros_init(), (self.channels,))
        self.log_scale = self.param("log_scale", nn.initializers.zeros_init(), (self.channels,))

    def _values(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        if not self.is_mutable_collection(DATA_INIT):
            return self.loc, self.log_scale
        axes = tuple(range(x.ndim - 1))
        loc = -jnp.mean(x, axes)
        log_scale = -jnp.log(jnp.std(x, axes) + 1e-6)
        self.put_variable(DATA_INIT, "loc", loc)
        self.put_variable(DATA_INIT, "log_scale", log_scale)
        return loc, log_scale

    def forward(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        loc, log_scale = self._values(x)
        y = (x + loc) * jnp.exp(log_scale)
        return y, jnp.full(x.shape[:1], _positions(x) * jnp.sum(log_scale))

    def inverse(self, y: jax.Array) -> tuple[jax.Array, jax.Array]:
        x = y * jnp.exp(-self.log_scale) - self.loc
        return x, jnp.full(y.shape[:1], -_positions(y) * jnp.sum(self.log_scale))


def _rotation_lu(key: jax.Array, c: int) -> tuple[jax.Array, jax.Array, jax.Array]:
    """(lower, upper, log_s) with L (U + diag(exp(log_s))) a random rotation: the LU
    factors of Q = P L U for a random orthogonal Q, with P dropped (P^T Q is itself a
    rotation) and the signs of U's diagonal moved into its columns (so is P^T Q D)."""
    q, _ = jnp.linalg.qr(jax.random.normal(key, (c, c)))
    _, lower, upper = jax.scipy.linalg.lu(q)
    sign = jnp.sign(jnp.diag(upper))
    upper = upper * sign[None, :]
    return jnp.tril(lower, -1), jnp.triu(upper, 1), jnp.log(jnp.abs(jnp.diag(upper)))


class InvConv1x1(nn.Module):
    """Glow's invertible 1x1 convolution y = W x per pixel, with W = L (U + diag(exp(log_s)))
    (LU parameterisation: L unit lower-triangular, U strictly upper), so that
    log |det W| = sum(log_s), O(C) instead of O(C^3). Starts at a random rotation."""

    channels: int

    def setup(self):
        # One rotation for the three factors (each param's initialiser gets its own key).
        lu = _rotation_lu(self.make_rng("params"), self.channels) if self.is_initializing() \
            else (None, None, None)
        self.lower = self.param("lower", lambda _: lu[0])
        self.upper = self.param("upper", lambda _: lu[1])
        self.log_s = self.param("log_s", lambda _: lu[2])

    def _factors(self) -> tuple[jax.Array, jax.Array]:
        c = self.channels
        lower = jnp.tril(self.lower, -1) + jnp.eye(c)
        upper = jnp.triu(self.upper, 1) + jnp.diag(jnp.exp(self.log_s))
        return lower, upper

    def matrix(self) -> jax.Array:
        """W, assembled."""
        lower, upper = self._factors()
        return lower @ upper

    def forward(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        y = x @ self.matrix().T
        return y, jnp.full(x.shape[:1], _positions(x) * jnp.sum(self.log_s))

    def inverse(self, y: jax.Array) -> tuple[jax.Array, jax.Array]:
        lower, upper = self._factors()
        eye = jnp.eye(self.channels)
        w_inv = jax.scipy.linalg.solve_triangular(
            upper, jax.scipy.linalg.solve_triangular(lower, eye, lower=True, unit_diagonal=True),
            lower=False)
        return y @ w_inv.T, jnp.full(y.shape[:1], -_positions(y) * jnp.sum(self.log_s))


class ConvNet(nn.Module):
    """A coupling's conditioner on images: 3x3 conv, ``num_blocks`` residual blocks of two
    3x3 convs, and a zero-initialised 3x3 output conv (so every coupling starts as the
    identity)."""

    hidden: int
    num_blocks: int
    out: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        h = nn.Conv(self.hidden, (3, 3))(x)
        for _ in range(self.num_blocks):
            r = nn.Conv(self.hidden, (3, 3))(nn.relu(h))
            h = h + nn.Conv(self.hidden, (3, 3))(nn.relu(r))
        return nn.Conv(self.out, (3, 3), kernel_init=nn.initializers.zeros_init())(nn.relu(h))


class MLP(nn.Module):
    """A coupling's conditioner on points [B, D]: ``num_blocks`` hidden ReLU layers and a
    zero-initialised output layer."""

    hidden: int
    num_blocks: int
    out: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        for _ in range(self.num_blocks):
            x = nn.relu(nn.Dense(self.hidden)(x))
        return nn.Dense(self.out, kernel_init=nn.initializers.zeros_init())(x)


def checkerboard(shape: Sequence[int], parity: int) -> jax.Array:
    """[H, W, 1] of 1 where (i + j + parity) is even: the pixels a checkerboard coupling
    keeps (and conditions on)."""
    i, j = np.indices(tuple(shape[:2]))
    return jnp.asarray(((i + j + parity) % 2 == 0)[..., None], jnp.float32)


class AffineCoupling(nn.Module):
    """RealNVP's affine coupling: the kept part x_a passes through; the rest becomes
    x_b * exp(log_s) + t with (log_s, t) = conditioner(x_a), log_s = scale * tanh(raw)
    bounded (the stable form of Dinh et al.; ``scale`` is learned per channel).

    ``mask`` 'checkerboard' keeps the pixels of one colour ([B, H, W, C]; the conditioner
    also sees the mask); 'channel' keeps half of the last axis (images or [B, D] points).
    ``parity`` chooses which half. ``conditioner`` is 'conv' (images) or 'mlp' (points).
    """

    channels: int
    mask: str
    parity: int
    hidden: int
    num_blocks: int = 1
    conditioner: str = "conv"

    def setup(self):
        if self.mask not in MASKS:
            raise ValueError(f"mask must be one of {', '.join(MASKS)}, got {self.mask!r}.")
        if self.mask == "channel" and self.channels < 2:
            raise ValueError("A channel coupling needs at least 2 channels; use 'checkerboard'.")
        net = ConvNet if self.conditioner == "conv" else MLP
        self.net = net(self.hidden, self.num_blocks, 2 * self._changed())
        self.scale = self.param("scale", nn.initializers.ones_init(), (self._changed(),))

    def _changed(self) -> int:
        """Channels the conditioner outputs (log_s, t) for."""
        if self.mask == "checkerboard":
            return self.channels
        return self.channels - self.channels // 2 if self.parity == 0 else self.channels // 2

    def _split(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        """(kept, changed): parity 0 keeps the first C // 2 channels, parity 1 the rest."""
        k = self.channels // 2
        a, b = x[..., :k], x[..., k:]
        return (a, b) if self.parity == 0 else (b, a)

    def _join(self, a: jax.Array, b: jax.Array) -> jax.Array:
        """The inverse of `_split`."""
        return jnp.concatenate([a, b] if self.parity == 0 else [b, a], axis=-1)

    def _shift_scale(self, kept: jax.Array) -> tuple[jax.Array, jax.Array]:
        raw, t = jnp.split(self.net(kept), 2, axis=-1)
        return self.scale * jnp.tanh(raw), t

    def _checkerboard_inputs(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        b = checkerboard(x.shape[1:], self.parity)
        kept = x * b
        return b, jnp.concatenate([kept, jnp.broadcast_to(b, x.shape[:-1] + (1,))], -1)

    def forward(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        if self.mask == "checkerboard":
            b, inputs = self._checkerboard_inputs(x)
            log_s, t = self._shift_scale(inputs)
            log_s, t = log_s * (1 - b), t * (1 - b)
            return x * jnp.exp(log_s) + t, per_example_sum(log_s)
        a, rest = self._split(x)
        log_s, t = self._shift_scale(a)
        return self._join(a, rest * jnp.exp(log_s) + t), per_example_sum(log_s)

    def inverse(self, y: jax.Array) -> tuple[jax.Array, jax.Array]:
        if self.mask == "checkerboard":
            b, inputs = self._checkerboard_inputs(y)
            log_s, t = self._shift_scale(inputs)
            log_s, t = log_s * (1 - b), t * (1 - b)
            return (y - t) * jnp.exp(-log_s), -per_example_sum(log_s)
        a, rest = self._split(y)
        log_s, t = self._shift_scale(a)
        return self._join(a, (rest - t) * jnp.exp(-log_s)), -per_example_sum(log_s)


def _spline_knots(raw: jax.Array, bound: float, minimum: float) -> tuple[jax.Array, jax.Array]:
    """Knot positions [..., K + 1] from -bound to bound and bin sizes [..., K] from
    unnormalised logits [..., K] (each bin at least ``minimum`` of the range)."""
    k = raw.shape[-1]
    sizes = minimum + (1 - minimum * k) * jax.nn.softmax(raw, axis=-1)
    knots = jnp.concatenate([jnp.zeros_like(sizes[..., :1]), jnp.cumsum(sizes, -1)], -1)
    knots = (2 * knots - 1) * bound
    knots = knots.at[..., 0].set(-bound).at[..., -1].set(bound)
    return knots, knots[..., 1:] - knots[..., :-1]


def rational_quadratic_spline(x: jax.Array, widths: jax.Array, heights: jax.Array,
                              slopes: jax.Array, bound: float, inverse: bool = False,
                              minimum: float = 1e-3) -> tuple[jax.Array, jax.Array]:
    """The monotone rational-quadratic spline of Durkan et al. (2019) on [-bound, bound],
    the identity outside (linear tails, slope 1 at both ends), elementwise.

    Args:
      x: [...] values (inputs, or outputs when ``inverse``).
      widths, heights: [..., K] unnormalised bin widths and heights (softmax).
      slopes: [..., K - 1] unnormalised derivatives at the inner knots (softplus).
      bound: the spline's interval.
      inverse: map outputs back to inputs (the root of a quadratic, in closed form).

    Returns:
      (y, log |dy/dx|) elementwise; for ``inverse`` (x, log |dx/dy|).
    """
    xs, w = _spline_knots(widths, bound, minimum)
    ys, h = _spline_knots(heights, bound, minimum)
    d = minimum + jax.nn.softplus(slopes)
    one = jnp.ones_like(d[..., :1])
    d = jnp.concatenate([one, d, one], -1)
    inside = (x > -bound) & (x < bound)
    v = jnp.clip(x, -bound, bound)
    edges = ys if inverse else xs
    k = jnp.clip(jnp.sum(v[..., None] >= edges[..., 1:-1], -1), 0, w.shape[-1] - 1)
    pick = lambda a: jnp.take_along_axis(a, k[..., None], -1)[..., 0]  # noqa: E731
    x_k, y_k, w_k, h_k, d_k, d_k1 = (pick(a) for a in (xs, ys, w, h, d[..., :-1], d[..., 1:]))
    s_k = h_k / w_k
    if inverse:
        dy = v - y_k
        a = h_k * (s_k - d_k) + dy * (d_k1 + d_k - 2 * s_k)
        b = h_k * d_k - dy * (d_k1 + d_k - 2 * s_k)
        c = -s_k * dy
        xi = 2 * c / (-b - jnp.sqrt(jnp.maximum(b * b - 4 * a * c, 0.0)))
        out = x_k + xi * w_k
    else:
        xi = (v - x_k) / w_k
        out = y_k + h_k * (s_k * xi ** 2 + d_k * xi * (1 - xi)) / (
            s_k + (d_k1 + d_k - 2 * s_k) * xi * (1 - xi))
    t = xi * (1 - xi)
    den = s_k + (d_k1 + d_k - 2 * s_k) * t
    log_det = (2 * jnp.log(s_k) + jnp.log(d_k1 * xi ** 2 + 2 * s_k * t + d_k * (1 - xi) ** 2)
               - 2 * jnp.log(den))
    log_det = -log_det if inverse else log_det
    return jnp.where(inside, out, x), jnp.where(inside, log_det, 0.0)


class SplineCoupling(nn.Module):
    """A coupling whose changed half goes through a rational-quadratic spline
    (`rational_quadratic_spline`, ``bins`` bins on [-bound, bound]) with knots from an MLP
    of the kept half: the neural spline flow's coupling (Durkan et al. 2019), on points
    [B, D]. Starts near the identity (zero output layer: equal bins, unit slopes)."""

    channels: int
    parity: int
    hidden: int
    num_blocks: int = 2
    bins: int = 8
    bound: float = 4.0

    def setup(self):
        k = self.channels // 2
        self.changed = self.channels - k if self.parity == 0 else k
        self.net = MLP(self.hidden, self.num_blocks, self.changed * (3 * self.bins - 1))

    def _split(self, x):
        k = self.channels // 2
        return (x[..., :k], x[..., k:]) if self.parity == 0 else (x[..., k:], x[..., :k])

    def _join(self, kept, changed):
        return jnp.concatenate([kept, changed] if self.parity == 0 else [changed, kept], -1)

    def _apply(self, x: jax.Array, inverse: bool) -> tuple[jax.Array, jax.Array]:
        kept, changed = self._split(x)
        raw = self.net(kept).reshape(*changed.shape, 3 * self.bins - 1)
        k = self.bins
        y, log_det = rational_quadratic_spline(changed, raw[..., :k], raw[..., k:2 * k],
                                               raw[..., 2 * k:], self.bound, inverse)
        return self._join(kept, y), per_example_sum(log_det)

    def forward(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        return self._apply(x, False)

    def inverse(self, y: jax.Array) -> tuple[jax.Array, jax.Array]:
        return self._apply(y, True)


def squeeze(x: jax.Array) -> jax.Array:
    """[B, H, W, C] -> [B, H/2, W/2, 4C]: each 2x2 patch into channels (volume-preserving,
    log-det 0)."""
    b, h, w, c = x.shape
    x = x.reshape(b, h // 2, 2, w // 2, 2, c).transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(b, h // 2, w // 2, 4 * c)


def unsqueeze(x: jax.Array) -> jax.Array:
    """The inverse of `squeeze`."""
    b, h, w, c = x.shape
    x = x.reshape(b, h, w, 2, 2, c // 4).transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(b, 2 * h, 2 * w, c // 4)


class Logit(nn.Module):
    """Data in (0, 1) to the real line: y = logit(alpha + (1 - 2 alpha) x), with its exact
    log-det sum(log(1 - 2 alpha) - log p - log(1 - p)), p = alpha + (1 - 2 alpha) x
    (RealNVP's preprocessing; alpha keeps the edges finite)."""

    alpha: float = 0.05

    def forward(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        p = self.alpha + (1 - 2 * self.alpha) * x
        log_det = np.log1p(-2 * self.alpha) - jnp.log(p) - jnp.log1p(-p)
        return jnp.log(p) - jnp.log1p(-p), per_example_sum(log_det)

    def inverse(self, y: jax.Array) -> tuple[jax.Array, jax.Array]:
        p = jax.nn.sigmoid(y)
        log_det = jax.nn.log_sigmoid(y) + jax.nn.log_sigmoid(-y) - np.log1p(-2 * self.alpha)
        return (p - self.alpha) / (1 - 2 * self.alpha), per_example_sum(log_det)


def multiscale_takes(shape: Sequence[int], levels: int) -> str | None:
    """The images a multi-scale flow of ``levels`` levels takes, in words, when ``shape`` is
    not one of them (None when it is): every level squeezes 2x2 pixels into channels."""
    return layers.sides_dividing_by(1 << levels, shape)


def plan(image_shape: Sequence[int], kind: str, levels: int, steps: int) -> list[tuple]:
    """The multi-scale architecture as a list of operations on shapes: ('logit',),
    ('squeeze',), ('split',) (factor half the channels out to the prior), ('coupling',
    mask, parity, channels), ('actnorm', channels), ('invconv', channels).

    RealNVP: per level, ``steps`` checkerboard couplings, a squeeze, ``steps`` channel
    couplings and a split; then ``steps + 1`` checkerboard couplings at the last scale,
    ActNorm after each coupling (in place of RealNVP's batch norm). Glow: per level a
    squeeze, ``steps`` x (ActNorm, 1x1 conv, channel coupling), and a split but at the last.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}.")
    layers.check_takes(f"A flow of {levels} level(s), each squeezing 2x2 pixels into channels,",
                       multiscale_takes(image_shape, levels), image_shape)
    h, w, c = image_shape
    ops: list[tuple] = [("logit",)]

    def couplings(mask, n, channels):
        for k in range(n):
            ops.extend([("coupling", mask, k % 2, channels), ("actnorm", channels)])

    for level in range(levels):
        if kind == "realnvp":
            couplings("checkerboard", steps, c)
            ops.append(("squeeze",))
            c *= 4
            couplings("channel", steps, c)
        else:
            ops.append(("squeeze",))
            c *= 4
            for k in range(steps):
                ops.extend([("actnorm", c), ("invconv", c), ("coupling", "channel", k % 2, c)])
        if kind == "realnvp" or level < levels - 1:
            ops.append(("split",))
            c //= 2
    if kind == "realnvp":
        couplings("checkerboard", steps + 1, c)
    return ops


class MultiScaleFlow(nn.Module):
    """RealNVP or Glow on images [B, H, W, C] in (0, 1) (dequantised data): the logit
    preprocessing, then `plan`'s couplings, squeezes and splits. ``forward`` returns the
    latent as one flat [B, H*W*C] vector (the factored-out parts first, in order) and the
    total log-det (the logit's included); ``inverse`` maps such a vector back to images."""

    image_shape: tuple[int, int, int]
    kind: str = "realnvp"
    levels: int = 2
    steps: int = 3
    hidden: int = 64
    num_blocks: int = 1
    alpha: float = 0.05

    def setup(self):
        layers = []
        for op in plan(self.image_shape, self.kind, self.levels, self.steps):
            if op[0] == "coupling":
                layers.append(AffineCoupling(op[3], op[1], op[2], self.hidden, self.num_blocks))
            elif op[0] == "actnorm":
                layers.append(ActNorm(op[1]))
            elif op[0] == "invconv":
                layers.append(InvConv1x1(op[1]))
            elif op[0] == "logit":
                layers.append(Logit(self.alpha))
        self.layers = layers

    def _ops(self) -> list[tuple]:
        return plan(self.image_shape, self.kind, self.levels, self.steps)

    def forward(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        zs, log_det, k = [], jnp.zeros(x.shape[:1]), 0
        for op in self._ops():
            if op[0] == "squeeze":
                x = squeeze(x)
            elif op[0] == "split":
                half = x.shape[-1] // 2
                zs.append(x[..., half:].reshape(x.shape[0], -1))
                x = x[..., :half]
            else:
                x, ld = self.layers[k].forward(x)
                log_det, k = log_det + ld, k + 1
        return jnp.concatenate(zs + [x.reshape(x.shape[0], -1)], axis=-1), log_det

    def _shapes(self) -> list[tuple[int, ...]]:
        """The feature shape before each operation of `_ops`, and the last one after."""
        shape, shapes = tuple(self.image_shape), []
        for op in self._ops():
            shapes.append(shape)
            h, w, c = shape
            shape = {"squeeze": (h // 2, w // 2, 4 * c), "split": (h, w, c // 2)}.get(op[0], shape)
        return shapes + [shape]

    def inverse(self, z: jax.Array) -> tuple[jax.Array, jax.Array]:
        ops, shapes, b = self._ops(), self._shapes(), z.shape[0]
        end = int(np.prod(shapes[-1]))
        x, z = z[:, z.shape[1] - end:].reshape(b, *shapes[-1]), z[:, :z.shape[1] - end]
        log_det, k = jnp.zeros((b,)), len(self.layers)
        for op, shape in zip(reversed(ops), reversed(shapes[:-1])):
            if op[0] == "squeeze":
                x = unsqueeze(x)
            elif op[0] == "split":
                out_shape = (*shape[:2], shape[2] - shape[2] // 2)
                part = int(np.prod(out_shape))
                out = z[:, z.shape[1] - part:].reshape(b, *out_shape)
                x, z = jnp.concatenate([x, out], axis=-1), z[:, :z.shape[1] - part]
            else:
                k -= 1
                x, ld = self.layers[k].inverse(x)
                log_det = log_det + ld
        return x, log_det


class PointFlow(nn.Module):
    """A flow on points [B, D] (the 2-D mixtures): ``num_layers`` times ActNorm and a channel
    coupling (affine, or a rational-quadratic spline) with an MLP conditioner, alternating
    which half is kept."""

    dims: int
    num_layers: int = 8
    hidden: int = 128
    num_blocks: int = 2
    coupling: str = "affine"  # or "spline": rational-quadratic spline couplings
    bins: int = 8

    def setup(self):
        if self.coupling not in COUPLINGS:
            raise ValueError(f"coupling must be one of {', '.join(COUPLINGS)}, got {self.coupling!r}.")

        def coupling(k):
            if self.coupling == "spline":
                return SplineCoupling(self.dims, k % 2, self.hidden, self.num_blocks, self.bins)
            return AffineCoupling(self.dims, "channel", k % 2, self.hidden, self.num_blocks, "mlp")

        self.layers = [m for k in range(self.num_layers) for m in (ActNorm(self.dims), coupling(k))]

    def forward(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        log_det = jnp.zeros(x.shape[:1])
        for layer in self.layers:
            x, ld = layer.forward(x)
            log_det = log_det + ld
        return x, log_det

    def inverse(self, z: jax.Array) -> tuple[jax.Array, jax.Array]:
        log_det = jnp.zeros(z.shape[:1])
        for layer in reversed(self.layers):
            z, ld = layer.inverse(z)
            log_det = log_det + ld
        return z, log_det


def bijector_fns(module: nn.Module) -> tuple[Callable, Callable]:
    """``(forward(params, x), inverse(params, y))``: ``module``'s two methods as pure
    functions of its parameters."""
    forward = lambda params, x: module.apply({"params": params}, x, method="forward")  # noqa: E731
    inverse = lambda params, y: module.apply({"params": params}, y, method="inverse")  # noqa: E731
    return forward, inverse


def data_init(module: nn.Module, params, x: jax.Array):
    """``params`` with every ActNorm's ``loc`` and ``log_scale`` set so that its input has
    zero mean and unit variance per channel on the batch ``x`` (Glow's data-dependent
    initialisation; each layer sees the outputs of the layers before it, already
    normalised). A pure function of (params, x)."""
    _, found = module.apply({"params": params}, x, method="forward", mutable=[DATA_INIT])
    flat = traverse_util.flatten_dict(params)
    flat.update(traverse_util.flatten_dict(found.get(DATA_INIT, {})))
    return traverse_util.unflatten_dict(flat)
