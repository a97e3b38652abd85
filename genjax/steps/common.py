"""The generic single-network train step, shared by every one-optimizer model."""

from __future__ import annotations

from typing import Any, Callable

import jax
import optax

from genjax.state import TrainState, step_key

Metrics = dict[str, jax.Array]
# (params, batch, key) -> (scalar loss, metrics); must be a pure function.
LossFn = Callable[[Any, dict, jax.Array], tuple[jax.Array, Metrics]]
StepFn = Callable[[TrainState, dict], tuple[TrainState, Metrics]]


def make_train_step(loss_fn: LossFn, tx: optax.GradientTransformation, *, net: str = "model",
                    axis_name: str | None = None) -> StepFn:
    """Build ``step(state, batch) -> (state, metrics)`` for one network.

    Args:
      loss_fn: the objective; its metrics are reported alongside ``loss``.
      tx: the optimizer.
      net: which entry of ``state.nets`` to train.
      axis_name: when the step runs under a data-parallel driver, the mapped axis;
        gradients and metrics are averaged over it (``lax.pmean``), so every replica
        applies the same update. Every replica gets the same step key: a loss that draws
        noise should draw it with `genjax.parallel.shard_draw` (as the VAE loss does),
        so that replicas use different slices of the one-device draw.

    Returns:
      A pure function; jit or map it with the driver of your choice.
    """

    def step(state: TrainState, batch: dict) -> tuple[TrainState, Metrics]:
        ns = state.nets[net]
        (loss, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            ns.params, batch, step_key(state))
        metrics = {"loss": loss, **metrics}
        if axis_name is not None:
            grads, metrics = jax.lax.pmean((grads, metrics), axis_name)
        updates, opt_state = tx.update(grads, ns.opt_state, ns.params)
        ns = ns.replace(params=optax.apply_updates(ns.params, updates), opt_state=opt_state)
        return state.replace(step=state.step + 1, nets={**state.nets, net: ns}), metrics

    return step
