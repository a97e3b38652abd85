"""What a train step needs to know about its replica under a data-parallel driver.

A step is written once, for one device, and takes an optional ``axis_name``: the mapped
axis of the driver (`genjax.parallel`) or None. Two things differ on a replica:
  * averages over the global batch: `average` (``lax.pmean`` over the axis);
  * random draws: every replica draws the one-device array with the same key and keeps
    its own rows (`shard_draw`), so the noise is exactly that of one device on the
    global batch, whatever the number of devices.
Losses, penalties and steps import this module; the drivers sit above them.
"""

from __future__ import annotations

from typing import Any, Callable

import jax

AXIS = "data"  # the mapped axis name the pmap driver builds its steps with


def average(tree: Any, axis_name: str | None) -> Any:
    """``tree`` averaged over the replicas of ``axis_name`` (itself when there is no axis)."""
    return jax.lax.pmean(tree, axis_name) if axis_name is not None else tree


def shard_draw(sample: Callable[[jax.Array, tuple[int, ...]], jax.Array], key: jax.Array,
               shape: tuple[int, ...], axis_name: str | None) -> jax.Array:
    """This replica's rows of ``sample(key, global shape)``.

    ``shape`` is the per-replica shape (rows first). Under a mapped axis every replica
    draws the global array with the same key and keeps its own slice, so the noise is
    exactly that of one device on the global batch; outside one it is ``sample(key, shape)``.
    Latents and per-example scalars are small, so drawing them in full costs little.
    """
    if axis_name is None:
        return sample(key, shape)
    n = jax.lax.axis_size(axis_name)
    full = sample(key, (n * shape[0], *shape[1:]))
    return jax.lax.dynamic_slice_in_dim(full, jax.lax.axis_index(axis_name) * shape[0], shape[0])


def normal(key: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    """Standard normal float32 draws: the ``sample`` for latents and posterior noise."""
    return jax.random.normal(key, shape)
