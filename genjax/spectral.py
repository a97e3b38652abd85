"""Spectral normalisation with the power-iteration state held explicitly.

The state is a flat dict ``{"path/to/kernel": u}`` of unit vectors (one per
normalised kernel, of size ``cout``), a plain pytree that lives in the train state,
is checkpointed with it and is identical on every replica. Because it acts on a
parameter pytree, it works with any Flax model::

    sn = spectral.init(params, key)                               # once
    params_n, sn = spectral.normalize(params, sn, update=True)    # train step
    params_n, _ = spectral.normalize(params, sn, update=False)    # sampling / eval

A kernel of shape (..., cout) is treated as the matrix W of shape (prod(...), cout)
(conv kernels: (kh * kw * cin, cout)). Its largest singular value is estimated as
sigma = v^T W u with u, v from power iteration and held constant for
differentiation (as in Miyato et al. 2018), and the kernel is replaced by W / sigma.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
from flax import traverse_util

SNState = dict[str, jax.Array]
Filter = Callable[[tuple[str, ...], jax.Array], bool]
_SEP = "/"


def default_filter(path: tuple[str, ...], leaf: jax.Array) -> bool:
    """All Dense and Conv kernels: leaves named ``kernel`` with at least 2 dimensions."""
    return path[-1] == "kernel" and leaf.ndim >= 2


def _l2_normalize(x: jax.Array, eps: float = 1e-12) -> jax.Array:
    return x * jax.lax.rsqrt(jnp.sum(x * x) + eps)


def _as_matrix(kernel: jax.Array) -> jax.Array:
    return kernel.reshape(-1, kernel.shape[-1])


def init(params: Any, key: jax.Array, *, filter: Filter = default_filter) -> SNState:
    """Random unit vectors u for every kernel selected by ``filter``."""
    flat = traverse_util.flatten_dict(params)
    chosen = sorted(path for path, leaf in flat.items() if filter(path, leaf))
    if not chosen:
        raise ValueError("spectral.init: the filter selected no parameters to normalise.")
    keys = jax.random.split(key, len(chosen))
    return {_SEP.join(path): _l2_normalize(jax.random.normal(k, (flat[path].shape[-1],)))
            for k, path in zip(keys, chosen)}


def _power_iteration(w: jax.Array, u: jax.Array, n_iter: int) -> tuple[jax.Array, jax.Array]:
    """(u, v) after ``n_iter`` rounds of v = W u / |W u|, u = W^T v / |W^T v|."""
    v = _l2_normalize(w @ u)
    for _ in range(n_iter):
        u = _l2_normalize(w.T @ v)
        v = _l2_normalize(w @ u)
    return u, v


def sigmas(params: Any, sn_state: SNState) -> dict[str, jax.Array]:
    """Current estimates of each kernel's largest singular value (no update)."""
    flat = traverse_util.flatten_dict(params, sep=_SEP)
    out = {}
    for name, u in sn_state.items():
        w = _as_matrix(flat[name])
        _, v = _power_iteration(w, u, 0)
        out[name] = v @ w @ u
    return out


def normalize(params: Any, sn_state: SNState, *, update: bool, n_iter: int = 1
              ) -> tuple[Any, SNState]:
    """Divide every tracked kernel by its estimated spectral norm.

    Args:
      params: the (unnormalised) parameter pytree, as stored in the train state.
      sn_state: from `init`; keys are the '/'-joined paths of the tracked kernels.
      update: advance the power iteration by ``n_iter`` steps and return the new
        vectors (training); otherwise use the stored u and return the state unchanged
        (sampling, evaluation).
      n_iter: power-iteration rounds per call when updating.

    Returns:
      (normalised params, new sn_state). Gradients flow through W in W / (v^T W u),
      never into u or v.
    """
    flat = traverse_util.flatten_dict(params, sep=_SEP)
    missing = set(sn_state) - set(flat)
    if missing:
        raise ValueError(f"spectral.normalize: no parameters at {sorted(missing)}; was the "
                         f"state built with spectral.init on this model's params?")
    new_state = {}
    for name, u in sn_state.items():
        kernel = flat[name]
        w = _as_matrix(kernel)
        u, v = _power_iteration(jax.lax.stop_gradient(w), u, n_iter if update else 0)
        u, v = jax.lax.stop_gradient(u), jax.lax.stop_gradient(v)
        flat[name] = kernel / (v @ w @ u)
        new_state[name] = u
    return traverse_util.unflatten_dict(flat, sep=_SEP), (new_state if update else sn_state)
