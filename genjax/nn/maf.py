"""Masked autoregressive flow (MAF, Papamakarios et al. 2017) with MADE conditioners
(Germain et al. 2015), as bijectors with the ``forward``/``inverse`` methods of
`genjax.nn.flows`.

One MAF layer maps data x [B, D] to y_i = x_i * exp(log_s_i) + t_i, where (log_s_i, t_i)
depend only on the x_j before i in the layer's order: MADE computes all of them in one
masked pass, so the density is one pass per layer and its Jacobian is triangular with
log-det sum_i log_s_i. The inverse (sampling) is sequential: D steps per layer, each
fixing one more coordinate (`sequential_inverse` updates MADE's hidden units
incrementally, so with one hidden layer the D steps cost about one pass). Consecutive
layers reverse the order; ActNorm precedes each (in place of the paper's batch norm),
per image channel rather than per value: a border pixel that is black in every digit
of the init batch would otherwise get a scale of about 50 (its spread is the
dequantisation noise alone) and any test digit that inks it a latent in the hundreds.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from genjax.nn.flows import ActNorm, Logit, per_example_sum


def made_degrees(dims: int, hidden: int, layers: int, reverse: bool) -> list[np.ndarray]:
    """MADE's degrees: the inputs' (1..D in the layer's order) and each hidden layer's
    (unit k has degree 1 + k mod (D - 1), so every degree below D is present)."""
    inputs = np.arange(dims, 0, -1) if reverse else np.arange(1, dims + 1)
    hidden_degrees = 1 + np.arange(hidden) % max(dims - 1, 1)
    return [inputs] + [hidden_degrees] * layers


def made_masks(degrees: list[np.ndarray], outputs_per_dim: int) -> list[np.ndarray]:
    """The kernel masks [in, out]: a hidden unit of degree m sees inputs of degree <= m;
    the outputs for input i (``outputs_per_dim`` of them, blocked per output) see hidden
    units of degree < i, so output i depends on inputs before i only."""
    masks = [(d_out[None, :] >= d_in[:, None]) for d_in, d_out in zip(degrees[:-1], degrees[1:])]
    out = np.tile(degrees[0], outputs_per_dim)
    masks.append(out[None, :] > degrees[-1][:, None])
    return [m.astype(np.float32) for m in masks]


class MaskedDense(nn.Module):
    """A dense layer whose kernel is multiplied by a fixed 0/1 mask (the Flax ``kernel``
    and ``bias`` layout)."""

    features: int
    kernel_init: nn.initializers.Initializer = nn.initializers.lecun_normal()

    @nn.compact
    def __call__(self, x: jax.Array, mask: np.ndarray) -> jax.Array:
        kernel = self.param("kernel", self.kernel_init, (x.shape[-1], self.features))
        bias = self.param("bias", nn.initializers.zeros_init(), (self.features,))
        return x @ (kernel * mask) + bias


class MADE(nn.Module):
    """[B, D] -> (raw log-scale, shift) [B, D] each, output i a function of the inputs
    before i in the order (natural, or reversed with ``reverse``): ``num_blocks`` masked
    ReLU layers of ``hidden`` units and a zero-initialised masked output layer (so a
    fresh MAF layer is the identity)."""

    dims: int
    hidden: int
    num_blocks: int = 1
    reverse: bool = False

    def masks(self) -> list[np.ndarray]:
        """The kernel masks of the hidden layers and the output layer, in order."""
        return made_masks(made_degrees(self.dims, self.hidden, self.num_blocks, self.reverse), 2)

    @nn.compact
    def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        masks = self.masks()
        for mask in masks[:-1]:
            x = nn.relu(MaskedDense(self.hidden)(x, mask))
        out = MaskedDense(2 * self.dims, nn.initializers.zeros_init())(x, masks[-1])
        return out[:, :self.dims], out[:, self.dims:]

    def masked_layers(self) -> list[tuple[jax.Array, jax.Array]]:
        """[(kernel * mask, bias)] of the hidden layers and the output layer, in order."""
        params = self.variables["params"]
        return [(params[f"MaskedDense_{i}"]["kernel"] * m, params[f"MaskedDense_{i}"]["bias"])
                for i, m in enumerate(self.masks())]


class MAFLayer(nn.Module):
    """One masked autoregressive affine layer on [B, D]: y = x * exp(log_s(x)) + t(x) with
    log_s = scale * tanh(raw) bounded (as the couplings), (raw, t) from `MADE`."""

    dims: int
    hidden: int
    num_blocks: int = 1
    reverse: bool = False

    def setup(self):
        self.made = MADE(self.dims, self.hidden, self.num_blocks, self.reverse)
        self.scale = self.param("scale", nn.initializers.ones_init(), (self.dims,))

    def _shift_scale(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        raw, t = self.made(x)
        return self.scale * jnp.tanh(raw), t

    def forward(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        log_s, t = self._shift_scale(x)
        return x * jnp.exp(log_s) + t, per_example_sum(log_s)

    def inverse(self, y: jax.Array) -> tuple[jax.Array, jax.Array]:
        return sequential_inverse(self.made.masked_layers(), self.scale, y, self.reverse)


def sequential_inverse(layers: list[tuple[jax.Array, jax.Array]], scale: jax.Array,
                       y: jax.Array, reverse: bool) -> tuple[jax.Array, jax.Array]:
    """(x, log_det) with y = x * exp(log_s(x)) + t(x), log_s = scale * tanh(raw), MADE's
    masked ``layers`` [(kernel * mask, bias)] giving (raw, t): one coordinate per step in
    the order, each from the ones before it, and log_det = -sum log_s accumulated on the
    way (each coordinate's log_s depends only on coordinates already final). The first
    layer's pre-activations are updated by the new coordinate's row alone and only that
    coordinate's two outputs are computed, so a step costs the hidden-to-hidden layers
    (nothing more with one hidden layer) instead of a whole MADE pass: with one hidden
    layer the D steps together cost about one forward pass."""
    d = y.shape[1]
    (first, first_bias), (out, out_bias) = layers[0], layers[-1]

    def step(k, carry):
        x, pre, log_det = carry
        p = d - 1 - k if reverse else k
        h = jax.nn.relu(pre)
        for kernel, bias in layers[1:-1]:
            h = jax.nn.relu(h @ kernel + bias)
        raw, t = h @ out[:, p] + out_bias[p], h @ out[:, d + p] + out_bias[d + p]
        log_s = scale[p] * jnp.tanh(raw)
        value = (y[:, p] - t) * jnp.exp(-log_s)
        return x.at[:, p].set(value), pre + value[:, None] * first[p], log_det - log_s

    b = y.shape[0]
    start = (jnp.zeros_like(y), jnp.broadcast_to(first_bias, (b, first.shape[1])), jnp.zeros((b,)))
    x, _, log_det = jax.lax.fori_loop(0, d, step, start)
    return x, log_det


class MAF(nn.Module):
    """MAF on images [B, H, W, C] in (0, 1) (dequantised data): the logit preprocessing,
    the image flattened to D = H*W*C values, then ``num_layers`` x (ActNorm, `MAFLayer`)
    with the order reversed from one layer to the next (ActNorm per image channel).
    ``forward`` returns the flat latent [B, D] and the total log-det (the logit's
    included)."""

    image_shape: tuple[int, int, int]
    num_layers: int = 5
    hidden: int = 512
    num_blocks: int = 1
    alpha: float = 0.05

    def setup(self):
        d, c = int(np.prod(self.image_shape)), self.image_shape[-1]
        self.logit = Logit(self.alpha)
        self.layers = [m for k in range(self.num_layers)
                       for m in (ActNorm(c), MAFLayer(d, self.hidden, self.num_blocks, k % 2 == 1))]

    def _apply(self, layer: nn.Module, x: jax.Array, method: str) -> tuple[jax.Array, jax.Array]:
        """One layer on the flat [B, D] values (ActNorm on them as [B, D / C, C])."""
        if isinstance(layer, ActNorm):
            y, log_det = getattr(layer, method)(x.reshape(x.shape[0], -1, self.image_shape[-1]))
            return y.reshape(x.shape), log_det
        return getattr(layer, method)(x)

    def forward(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        x, log_det = self.logit.forward(x)
        x = x.reshape(x.shape[0], -1)
        for layer in self.layers:
            x, ld = self._apply(layer, x, "forward")
            log_det = log_det + ld
        return x, log_det

    def inverse(self, z: jax.Array) -> tuple[jax.Array, jax.Array]:
        log_det = jnp.zeros(z.shape[:1])
        for layer in reversed(self.layers):
            z, ld = self._apply(layer, z, "inverse")
            log_det = log_det + ld
        x, ld = self.logit.inverse(z.reshape(z.shape[0], *self.image_shape))
        return x, log_det + ld
