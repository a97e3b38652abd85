"""Mixed precision: compute in bfloat16, keep parameters, optimizer state and losses in float32.

`in_compute_dtype` wraps a Flax ``apply`` so that the parameters and floating-point inputs
enter the network in the compute dtype and every floating-point output (including
mutable collections such as BatchNorm statistics) leaves it in float32. The float32
parameters stay the master copy: gradients flow back through the casts in float32, the
optimizer updates float32 values, and losses, penalties, KL terms and log-likelihoods
are computed from float32 outputs. BatchNorm already reduces in float32 (Flax's
``force_float32_reductions``), so its running statistics keep full precision too.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp

COMPUTE_DTYPES = ("float32", "bfloat16")


def compute_dtype(name: str) -> jnp.dtype:
    """The dtype named ``name`` (one of `COMPUTE_DTYPES`), with a clear error otherwise."""
    if name not in COMPUTE_DTYPES:
        raise ValueError(f"Unknown compute dtype {name!r}; valid: {', '.join(COMPUTE_DTYPES)}.")
    return jnp.dtype(name)


def cast_floating(tree: Any, dtype: Any) -> Any:
    """``tree`` with every floating-point array cast to ``dtype`` (integers, keys and
    non-array leaves unchanged)."""
    def cast(x):
        if hasattr(x, "dtype") and jnp.issubdtype(x.dtype, jnp.floating):
            return x.astype(dtype)
        return x

    return jax.tree.map(cast, tree)


def in_compute_dtype(apply: Callable[..., Any], name: str) -> Callable[..., Any]:
    """``apply(variables, *args, **kwargs)`` (a Flax ``module.apply``) run in the compute dtype
    ``name``: ``variables["params"]`` and floating positional ``args`` are cast to it, floating
    outputs back to float32. Other collections (BatchNorm statistics) are passed as they
    are. ``"float32"`` returns ``apply`` itself."""
    dtype = compute_dtype(name)
    if dtype == jnp.float32:
        return apply

    def mixed(variables: dict, *args: Any, **kwargs: Any) -> Any:
        variables = {**variables, "params": cast_floating(variables["params"], dtype)}
        return cast_floating(apply(variables, *cast_floating(args, dtype), **kwargs), jnp.float32)

    return mixed
