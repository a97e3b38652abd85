"""Flow steps: the maximum-likelihood objective (on dequantised images or on raw points),
its test-set sums, and sampling with a temperature.

Every function takes the flow as ``forward(params, x) -> (z, log_det)`` and
``inverse(params, z) -> (x, log_det)`` (`genjax.nn.flows.bijector_fns`) and reads no config.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from genjax import replica
from genjax.losses import flows as L
from genjax.steps.common import LossFn, check_images

Bijection = Callable[[object, jax.Array], tuple[jax.Array, jax.Array]]


def nll(forward: Bijection, params, x: jax.Array, u: jax.Array | None) -> jax.Array:
    """Per-example -log P in nats: of 8-bit images ``x`` (in [0, 1]) dequantised with the
    noise ``u`` (the bound `genjax.losses.flows.discrete_nll`), or, with ``u`` None, the
    exact -log p of continuous data ``x``."""
    if u is None:
        return -L.log_likelihood(*forward(params, x))
    log_density = L.log_likelihood(*forward(params, L.dequantize(x, u)))
    return L.discrete_nll(log_density, int(np.prod(x.shape[1:])))


def nll_loss(forward: Bijection, dequantize: bool, axis_name: str | None = None) -> LossFn:
    """``loss(params, batch, key)``: the mean -log P over the batch in nats, with fresh
    dequantisation noise per example (drawn as one device would draw it), and bits/dim."""

    def loss(params, batch: dict, key: jax.Array):
        check_images(batch)
        x = batch["image"]
        u = replica.shard_draw(jax.random.uniform, key, x.shape, axis_name) if dequantize else None
        value = jnp.mean(nll(forward, params, x, u))
        if not dequantize:  # a density of continuous points: no bits per 8-bit value
            return value, {"nll": value}
        return value, {"nll": value, "bits_per_dim": L.bits_per_dim(value, int(np.prod(x.shape[1:])))}

    return loss


def make_image_nll(forward: Bijection, dequantize: bool, draws: int = 1
                   ) -> Callable[[object, dict, jax.Array], jax.Array]:
    """``nll(params, batch, key)`` [B]: each example's -log P in nats (images: averaged
    over ``draws`` dequantisation draws of ``key``)."""

    def image_nll(params, batch: dict, key: jax.Array) -> jax.Array:
        x = batch["image"]
        if not dequantize:
            return nll(forward, params, x, None)
        per_draw = lambda k: nll(forward, params, x, jax.random.uniform(k, x.shape))  # noqa: E731
        return jnp.mean(jax.lax.map(per_draw, jax.random.split(key, draws)), axis=0)

    return image_nll


def make_eval(forward: Bijection, dequantize: bool, draws: int = 1
              ) -> Callable[[object, dict, jax.Array], dict[str, jax.Array]]:
    """``eval(params, batch, key)``: sums over the batch's real rows (``mask``) of
    `make_image_nll`'s -log P in nats, its square and the count, for means and standard
    errors over a test set."""
    image_nll = make_image_nll(forward, dequantize, draws)

    def evaluate(params, batch: dict, key: jax.Array) -> dict[str, jax.Array]:
        values, mask = image_nll(params, batch, key), batch["mask"]
        return {"nll": jnp.sum(values * mask), "nll_sq": jnp.sum(values * values * mask),
                "count": jnp.sum(mask)}

    return evaluate


def make_sampler(inverse: Bijection, shape: tuple[int, ...], temperature: float = 1.0):
    """``sample(params, key, n) -> x`` [n, *shape]: z ~ N(0, temperature^2 I) (the flat
    latent of every flow here) mapped through the inverse flow (temperature < 1 trades
    diversity for cleaner samples)."""
    dims = int(np.prod(shape))

    def sample(params, key: jax.Array, n: int) -> jax.Array:
        return inverse(params, temperature * jax.random.normal(key, (n, dims)))[0]

    return sample
