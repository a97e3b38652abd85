"""What the equivalence tests compare: fixed batches, float64 casts, and the relative
difference of each state component (tests/parallel_worker.py across drivers,
tests/test_population.py across population members)."""

import jax
import numpy as np


def batches(preprocess: str, n_rows: int, n_steps: int) -> list[dict]:
    """Fixed random image batches in the model's range (the same in every process)."""
    rng = np.random.default_rng(0)
    lo = -1.0 if preprocess == "symmetric" else 0.0
    return [{"image": rng.uniform(lo, 1.0, (n_rows, 28, 28, 1)).astype(np.float32),
             "label": rng.integers(0, 10, n_rows).astype(np.int32)}
            for _ in range(n_steps)]


def in_float64(tree):
    """``tree`` with every float32 leaf as float64 (under ``jax.enable_x64``)."""
    return jax.tree.map(lambda x: x.astype(np.float64) if x.dtype == np.float32 else x, tree)


def flat(state) -> list[np.ndarray]:
    """Every leaf as numpy (typed keys as their key data)."""
    leaves = jax.tree.leaves(state)
    return [np.asarray(jax.random.key_data(x) if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)
                       else x) for x in leaves]


def components(state) -> dict[str, list[np.ndarray]]:
    """The state's parts as the equivalence test compares them: step, rng, each network's
    params, opt_state and batch_stats, each ``extra`` entry (spectral norm, EMA)."""
    parts = {"step": [state.step], "rng": [state.rng]}
    for name, net in state.nets.items():
        for field in ("params", "opt_state", "batch_stats"):
            parts[f"{name}/{field}"] = getattr(net, field)
    parts.update({f"extra/{k}": v for k, v in state.extra.items()})
    return {k: flat(v) for k, v in parts.items() if flat(v)}


def relative_differences(a, b) -> dict[str, float]:
    """||a - b|| / ||b|| per component (its leaves concatenated)."""
    out = {}
    for (name, xs), ys in zip(components(a).items(), components(b).values(), strict=True):
        x = np.concatenate([v.astype(np.float64).ravel() for v in xs])
        y = np.concatenate([v.astype(np.float64).ravel() for v in ys])
        out[name] = float(np.linalg.norm(x - y) / max(np.linalg.norm(y), 1e-30))
    return out
