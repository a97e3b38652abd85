"""The generic single-network train step, shared by every one-optimizer model."""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax

from genjax import replica
from genjax.state import TrainState, step_key

Metrics = dict[str, jax.Array]
# (params, batch, key) -> (scalar loss, metrics); must be a pure function.
LossFn = Callable[[Any, dict, jax.Array], tuple[jax.Array, Metrics]]
StepFn = Callable[[TrainState, dict], tuple[TrainState, Metrics]]


def check_images(batch: dict) -> None:
    """Refuse integer images when a step is traced: steps take float images already mapped
    by the data pipeline's ``preprocess`` (raw uint8 pixels, 255 times too large,
    otherwise train straight to NaN without a word)."""
    images = batch.get("image") if isinstance(batch, dict) else None
    if images is not None and not jnp.issubdtype(images.dtype, jnp.floating):
        raise TypeError(f"batch['image'] must be floating point in the model's range (e.g. "
                        f"[0, 1] for preprocess='unit'), got {images.dtype}; map uint8 "
                        f"pixels with x / 255 (genjax.data does this for you).")


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
        noise should draw it with `genjax.replica.shard_draw` (as the VAE loss does),
        so that replicas use different slices of the one-device draw.

    Returns:
      A pure function; jit or map it with the driver of your choice.
    """

    def step(state: TrainState, batch: dict) -> tuple[TrainState, Metrics]:
        check_images(batch)
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


def ema_update(ema: Any, params: Any, decay: float) -> Any:
    """decay * ema + (1 - decay) * params, leaf by leaf (Polyak averaging of weights)."""
    return jax.tree.map(lambda e, p: decay * e + (1.0 - decay) * p, ema, params)


def with_ema(step: StepFn, decay: float, *, net: str = "model") -> StepFn:
    """``step``, then ``state.extra["ema"]`` = `ema_update` of it with the new params of
    ``net`` (samples are drawn with the average)."""

    def wrapped(state: TrainState, batch: dict) -> tuple[TrainState, Metrics]:
        state, metrics = step(state, batch)
        ema = ema_update(state.extra["ema"], state.nets[net].params, decay)
        return state.replace(extra={**state.extra, "ema": ema}), metrics

    return wrapped


SKIPPED = "nonfinite_skipped"  # metric: 1 for a step whose update was thrown away


def all_finite(tree: Any) -> jax.Array:
    """True when every floating-point leaf of ``tree`` is free of NaN and Inf."""
    leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)
              if jnp.issubdtype(x.dtype, jnp.inexact)]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.array(True)


def skip_nonfinite(step: StepFn) -> StepFn:
    """``step``, except that an update producing a NaN/Inf (in a metric or anywhere in the
    new state) is thrown away: the state stays as it was but for ``step``, which advances
    so the next step draws new noise and data. Metrics of a skipped step are zeros, and
    ``metrics[SKIPPED]`` is 1 (0 otherwise), so sums over steps count the skips.

    Under a data-parallel driver every replica holds the same state and averaged metrics,
    so every replica makes the same choice.
    """

    def wrapped(state: TrainState, batch: dict) -> tuple[TrainState, Metrics]:
        new, metrics = step(state, batch)
        ok = all_finite((metrics, new.nets, new.extra))
        nets, extra = jax.tree.map(lambda a, b: jnp.where(ok, a, b),
                                   (new.nets, new.extra), (state.nets, state.extra))
        new = new.replace(nets=nets, extra=extra)
        metrics = jax.tree.map(lambda m: jnp.where(ok, m, jnp.zeros_like(m)), metrics)
        return new, {**metrics, SKIPPED: 1.0 - ok.astype(jnp.float32)}

    return wrapped


def multi_step(step: StepFn) -> StepFn:
    """``step`` run over a stack of batches in one compiled call (``lax.scan``).

    Every leaf of the stacked batch has a leading axis of k steps; the state goes
    through the k steps in order and the metrics come back summed over them (the
    training loop sums per-step metrics between log steps anyway). One call per k steps
    removes k - 1 dispatches and host round trips, which is what small steps on an
    accelerator are bound by.
    """

    def wrapped(state: TrainState, batches: dict) -> tuple[TrainState, Metrics]:
        def body(carry, batch):
            state, total = carry
            state, metrics = step(state, batch)
            return (state, jax.tree.map(jnp.add, total, metrics)), None

        shapes = jax.eval_shape(step, state, jax.tree.map(lambda x: x[0], batches))[1]
        zeros = jax.tree.map(lambda m: jnp.zeros(m.shape, m.dtype), shapes)  # 0 + m == m
        (state, total), _ = jax.lax.scan(body, (state, zeros), batches)
        return state, total

    return wrapped


def drop_labels(key: jax.Array, labels: jax.Array, rate: float, num_classes: int,
                axis_name: str | None = None) -> jax.Array:
    """``labels`` with each replaced by the null label ``num_classes`` with probability
    ``rate``: classifier-free guidance (Ho & Salimans 2022) trains one network both
    conditional and unconditional. Under a driver, the one-device draw is sliced."""
    drop = replica.shard_draw(jax.random.uniform, key, labels.shape, axis_name)
    return jnp.where(drop < rate, num_classes, labels)


def with_null_labels(x: Any, labels: jax.Array, num_classes: int) -> tuple[Any, jax.Array]:
    """The batch twice (every array of ``x`` stacked on itself) with ``labels`` then the
    null label: a guided output's conditional and unconditional halves in one call."""
    doubled = jax.tree.map(lambda a: jnp.concatenate([a, a]), x)
    return doubled, jnp.concatenate([labels, jnp.full_like(labels, num_classes)])


def guide(both: jax.Array, guidance: float) -> jax.Array:
    """(1 + w) out(c) - w out(null) from the halves of ``both`` (see `with_null_labels`)."""
    cond, uncond = jnp.split(both, 2)
    return (1.0 + guidance) * cond - guidance * uncond
