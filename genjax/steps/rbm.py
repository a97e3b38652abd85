"""RBM and deep-belief-net train steps: CD-k and persistent CD, plain or centered, with the
persistent chains and the centering offsets held in ``state.extra``.

State layout (one entry per layer l of a deep belief net; a single RBM is layer 0):
  ``state.nets[f"layer{l}"]``: parameters {"W", "b", "c"} and their optimizer state;
  ``state.extra["chains"][l]``: the persistent chains [num_chains, D_l] (binary);
  ``state.extra["offsets"][l]``: {"visible": mu, "hidden": lam} (zeros unless centered).

Layers train greedily: layer l during steps [l S, (l + 1) S) with S = ``steps_per_layer``,
on the mean-field hidden probabilities of the frozen layers below.

Under a data-parallel driver (``axis_name``) the chains stay one global array, the same on
every replica: each replica advances its own rows of it (row block ``axis_index``) with
its rows of the one-device noise (`genjax.replica.shard_draw`) and the updated blocks are
gathered back (``all_gather``), so every driver computes exactly what one device computes.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax

from genjax import replica
from genjax.losses import rbm as L
from genjax.nn import rbm as R
from genjax.state import TrainState, step_key
from genjax.steps.common import Metrics, StepFn, check_images


def layer_name(layer: int) -> str:
    """The ``state.nets`` key of layer ``layer``."""
    return f"layer{layer}"


def plain_layers(state: TrainState, depth: int | None = None) -> list[L.Params]:
    """The first ``depth`` layers (all by default) as plain RBMs (`genjax.losses.rbm.to_plain`
    of their offsets)."""
    offsets = state.extra["offsets"][:depth]
    return [L.to_plain(state.nets[layer_name(i)].params, o) for i, o in enumerate(offsets)]


def _rows(x: jax.Array, axis_name: str | None) -> jax.Array:
    """This replica's block of rows of a global array (all of it without an axis)."""
    if axis_name is None:
        return x
    replicas = jax.lax.axis_size(axis_name)
    if x.shape[0] % replicas:
        raise ValueError(f"config.num_chains ({x.shape[0]}) must divide by the {replicas} "
                         f"devices: each advances an equal block of the persistent chains.")
    n = x.shape[0] // replicas
    return jax.lax.dynamic_slice_in_dim(x, jax.lax.axis_index(axis_name) * n, n)


def _gather(x: jax.Array, axis_name: str | None) -> jax.Array:
    """The global array from every replica's block of rows."""
    return x if axis_name is None else jax.lax.all_gather(x, axis_name, tiled=True)


def shift_offsets(params: L.Params, offsets: L.Offsets, data: jax.Array, rate: float,
                  axis_name: str | None) -> tuple[L.Params, L.Offsets]:
    """Move the centering offsets a fraction ``rate`` toward the batch's visible mean and
    mean hidden probability, and re-parameterise b and c so that the distribution is
    unchanged (b += W (lam' - lam), c += W^T (mu' - mu); see `genjax.losses.rbm.to_plain`)."""
    a = params["c"] + (data - offsets["visible"]) @ params["W"]
    means = replica.average((jnp.mean(data, 0), jnp.mean(jax.nn.sigmoid(a), 0)), axis_name)
    mu = (1.0 - rate) * offsets["visible"] + rate * means[0]
    lam = (1.0 - rate) * offsets["hidden"] + rate * means[1]
    w = params["W"]
    params = {"W": w, "b": params["b"] + w @ (lam - offsets["hidden"]),
              "c": params["c"] + (mu - offsets["visible"]) @ w}
    return params, {"visible": mu, "hidden": lam}


def _negatives(plain: L.Params, start: jax.Array, k: int, key: jax.Array,
               axis_name: str | None) -> jax.Array:
    """k Gibbs sweeps from ``start`` (this replica's rows), with the one-device noise."""
    uniform = lambda key, shape: replica.shard_draw(jax.random.uniform, key, shape, axis_name)  # noqa: E731
    return R.gibbs_chain(plain, start, key, k, uniform)[0]


def _train_layer(state: TrainState, batch: dict, layer: int, *, tx: optax.GradientTransformation,
                 k: int, persistent: bool, centering_rate: float, axis_name: str | None
                 ) -> tuple[TrainState, Metrics]:
    """One CD-k / PCD update of layer ``layer`` on the batch propagated up to it."""
    name, key = layer_name(layer), step_key(state)
    x = batch["image"].reshape(batch["image"].shape[0], -1)
    data = R.propagate_up(plain_layers(state, layer), x, layer)
    ns, offsets = state.nets[name], state.extra["offsets"][layer]
    # A plain RBM's offsets stay zero: skip them (each use reads W once more).
    plain = L.to_plain(ns.params, offsets) if centering_rate else ns.params
    chains = state.extra["chains"][layer]
    start = _rows(chains, axis_name) if persistent else data
    negatives = _negatives(plain, start, k, key, axis_name)
    loss, grads, free_energy = L.cd_gradient(ns.params, offsets if centering_rate else None,
                                             data, negatives)
    metrics = {"loss": loss, "free_energy": free_energy, "layer": jnp.asarray(layer, jnp.float32)}
    grads, metrics = replica.average((grads, metrics), axis_name)
    updates, opt_state = tx.update(grads, ns.opt_state, ns.params)
    params = optax.apply_updates(ns.params, updates)
    if centering_rate:
        params, offsets = shift_offsets(params, offsets, data, centering_rate, axis_name)
    extra = dict(state.extra)
    if persistent:
        extra["chains"] = _replace(extra["chains"], layer, _gather(negatives, axis_name))
    extra["offsets"] = _replace(extra["offsets"], layer, offsets)
    nets = {**state.nets, name: ns.replace(params=params, opt_state=opt_state)}
    return state.replace(step=state.step + 1, nets=nets, extra=extra), metrics


def _replace(items: list[Any], i: int, value: Any) -> list[Any]:
    """``items`` with entry ``i`` replaced (a new list)."""
    return [value if j == i else item for j, item in enumerate(items)]


def make_train_step(tx: optax.GradientTransformation, *, layers: int, steps_per_layer: int,
                    k: int = 1, persistent: bool = True, centering_rate: float = 0.0,
                    axis_name: str | None = None) -> StepFn:
    """``step(state, batch) -> (state, metrics)`` of a ``layers``-deep belief net (1: an RBM).

    Args:
      tx: every layer's optimizer (SGD with momentum and weight decay, typically).
      layers: how many RBMs are stacked.
      steps_per_layer: steps each layer trains before the next one starts.
      k: Gibbs sweeps per update (CD-k; for PCD, sweeps of the persistent chains).
      persistent: PCD (Tieleman 2008) when True, CD-k from the data otherwise.
      centering_rate: 0 for a plain RBM; otherwise the rate at which the centering offsets
        follow the data and hidden means (Melchior et al. 2016 use 0.01).
      axis_name: the data-parallel axis (see the module docstring), or None.
    """
    branches = [lambda s, b, i=i: _train_layer(s, b, i, tx=tx, k=k, persistent=persistent,
                                               centering_rate=centering_rate, axis_name=axis_name)
                for i in range(layers)]

    def step(state: TrainState, batch: dict) -> tuple[TrainState, Metrics]:
        check_images(batch)
        if layers == 1:
            return branches[0](state, batch)
        layer = jnp.minimum(state.step // steps_per_layer, layers - 1)
        return jax.lax.switch(layer, branches, state, batch)

    return step
