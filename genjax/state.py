"""Immutable train-state pytrees.

A `TrainState` is everything a run needs to continue: the step, the root rng key and
one `NetState` per network, plus ``extra`` for state that belongs to no single
optimizer (spectral-norm vectors, EMA weights, fade-in coefficients...). Optimizers
themselves are static functions held by the step factory, not by the state, so a
state is a plain pytree of arrays that orbax saves and restores without help.
"""

from __future__ import annotations

from typing import Any, Mapping

import jax
import jax.numpy as jnp
import optax
from flax import struct


@struct.dataclass
class NetState:
    """One trained network: its parameters, optimizer state and BatchNorm statistics."""

    params: Any
    opt_state: Any
    batch_stats: Any = struct.field(default_factory=dict)


@struct.dataclass
class TrainState:
    """The whole state of a run.

    Attributes:
      step: int32 scalar, number of completed train steps.
      rng: typed root key (``jax.random.key``); step keys are derived from it.
      nets: network name -> `NetState` (``{"model": ...}``, or ``{"gen":, "disc":}``).
      extra: any other state carried from step to step.
    """

    step: jax.Array
    rng: jax.Array
    nets: Mapping[str, NetState]
    extra: Mapping[str, Any] = struct.field(default_factory=dict)


def create_net(params: Any, tx: optax.GradientTransformation, batch_stats: Any = None) -> NetState:
    """A fresh `NetState` with the optimizer initialised on ``params``."""
    return NetState(params=params, opt_state=tx.init(params),
                    batch_stats={} if batch_stats is None else batch_stats)


def create(rng: jax.Array, nets: Mapping[str, NetState], extra: Mapping[str, Any] | None = None
           ) -> TrainState:
    """A `TrainState` at step 0."""
    return TrainState(step=jnp.zeros((), jnp.int32), rng=rng, nets=dict(nets),
                      extra={} if extra is None else dict(extra))


def step_key(state: TrainState) -> jax.Array:
    """The key of the current step: ``fold_in(state.rng, state.step)``.

    Derived, never stored, so a resumed run draws the same randomness as an
    uninterrupted one.
    """
    return jax.random.fold_in(state.rng, state.step)
