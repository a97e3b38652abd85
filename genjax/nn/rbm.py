"""Bernoulli-Bernoulli RBMs and deep belief nets: initialisation, block Gibbs sampling
(compiled, ``lax.scan``) and the passes between a DBN's layers, as pure functions of the
parameter dict of `genjax.losses.rbm` (where the energy, free energy and conditionals
are). Sampling takes the plain RBM (`genjax.losses.rbm.to_plain` a centered one first).
Nothing here reads a config.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from genjax.losses.rbm import Params, hidden_probs, visible_logits

# (key, shape) -> uniform [0, 1) draws: jax.random.uniform, or a replica's rows of them.
Uniform = Callable[[jax.Array, tuple[int, ...]], jax.Array]


def init_params(key: jax.Array, visible: int, hidden: int, scale: float = 0.01) -> Params:
    """Weights ~ N(0, scale^2), biases zero (Hinton's practical guide; scikit-learn's
    BernoulliRBM starts the same way)."""
    return {"W": scale * jax.random.normal(key, (visible, hidden)),
            "b": jnp.zeros((visible,)), "c": jnp.zeros((hidden,))}


def bernoulli(key: jax.Array, probs: jax.Array, uniform: Uniform = jax.random.uniform
              ) -> jax.Array:
    """Binary draws with the given probabilities (as float32), from ``uniform`` noise."""
    return (uniform(key, probs.shape) < probs).astype(probs.dtype)


def gibbs_step(params: Params, v: jax.Array, key: jax.Array, uniform: Uniform = jax.random.uniform
               ) -> tuple[jax.Array, jax.Array]:
    """One block Gibbs sweep of a plain RBM: h ~ p(h | v), then v' ~ p(v | h).
    Returns (v', p(v' = 1 | h))."""
    h_key, v_key = jax.random.split(key)
    h = bernoulli(h_key, hidden_probs(params, v), uniform)
    probs = jax.nn.sigmoid(visible_logits(params, h))
    return bernoulli(v_key, probs, uniform), probs


def gibbs_chain(params: Params, v: jax.Array, key: jax.Array, steps: int,
                uniform: Uniform = jax.random.uniform) -> tuple[jax.Array, jax.Array]:
    """``steps`` Gibbs sweeps from ``v`` (compiled, ``lax.scan``); step i uses
    ``fold_in(key, i)``. Returns the last (v, p(v = 1 | h))."""

    def body(carry, i):
        return gibbs_step(params, carry[0], jax.random.fold_in(key, i), uniform), None

    (v, probs), _ = jax.lax.scan(body, (v, jnp.zeros_like(v)), jnp.arange(steps))
    return v, probs


def propagate_up(layers: list[Params], v: jax.Array, depth: int) -> jax.Array:
    """Mean-field p(h | v) through the first ``depth`` plain RBMs of a deep belief net
    (the input the next layer trains on)."""
    for params in layers[:depth]:
        v = hidden_probs(params, v)
    return v


def propagate_down(layers: list[Params], h: jax.Array) -> jax.Array:
    """A deep belief net's top-down pass: from the top RBM's visible units ``h`` through
    the lower layers' p(v = 1 | h), as probabilities (mean field)."""
    for params in reversed(layers[:-1]):
        h = jax.nn.sigmoid(visible_logits(params, h))
    return h
