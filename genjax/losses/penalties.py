"""Critic regularisers: WGAN-GP gradient penalty, R1, and WGAN weight clipping.

A penalty is a function of ``critic_fn`` (a function from a batch of images to
[B] or [B, 1] scores, e.g. ``lambda x: model.apply(params, x)``), data and, where
random, a key. Per-example input gradients are computed as the gradient of the
*sum* of the scores: exact whenever each score depends only on its own example
(no BatchNorm in batch-statistics mode in the critic), and far cheaper than vmap
of grad.
"""

from __future__ import annotations

from typing import Any, Callable

import chex
import jax
import jax.numpy as jnp

from genjax import replica

CriticFn = Callable[[jax.Array], jax.Array]


def _input_gradients(critic_fn: CriticFn, x: jax.Array) -> jax.Array:
    return jax.grad(lambda inp: jnp.sum(critic_fn(inp)))(x)


def _per_example_norm(g: jax.Array) -> jax.Array:
    # The epsilon keeps the norm differentiable where the gradient is exactly zero.
    return jnp.sqrt(jnp.sum(g.reshape(g.shape[0], -1) ** 2, axis=-1) + 1e-12)


def gradient_penalty(critic_fn: CriticFn, real: jax.Array, fake: jax.Array, key: jax.Array,
                     *, target: float = 1.0, axis_name: str | None = None) -> jax.Array:
    """E[(||grad D(x_hat)|| - target)^2] on random interpolates (Gulrajani et al. 2017).

    x_hat = eps * real + (1 - eps) * fake with eps ~ U[0, 1] per example. Multiply by
    lambda (10 in the paper) and add to the critic loss. ``axis_name``: under a
    data-parallel driver, eps is this replica's slice of the one-device draw.
    """
    chex.assert_equal_shape([real, fake])
    eps = replica.shard_draw(lambda k, s: jax.random.uniform(k, s, real.dtype), key,
                              (real.shape[0],) + (1,) * (real.ndim - 1), axis_name)
    x_hat = eps * real + (1.0 - eps) * fake
    norms = _per_example_norm(_input_gradients(critic_fn, x_hat))
    return jnp.mean((norms - target) ** 2)


def r1_penalty(critic_fn: CriticFn, real: jax.Array) -> jax.Array:
    """E[||grad D(x)||^2] on real data (Mescheder et al. 2018); multiply by gamma / 2."""
    g = _input_gradients(critic_fn, real)
    return jnp.mean(jnp.sum(g.reshape(g.shape[0], -1) ** 2, axis=-1))


def clip_weights(params: Any, clip: float) -> Any:
    """Clip every parameter to [-clip, clip] (the original WGAN's Lipschitz constraint)."""
    if clip <= 0:
        raise ValueError(f"clip must be positive, got {clip}.")
    return jax.tree.map(lambda p: jnp.clip(p, -clip, clip), params)
