"""Named random streams: every use of a run's seed outside the train step has a name.

A run has one integer ``config.seed``. Parameter initialisation, the fixed noise of the
sample grids, the noise of evaluation samples and the draws of evaluation-only metrics
each need their own key, and two of them must never coincide. Instead of seed offsets
(``seed + 1``, ``seed + 2``, ...) scattered over the code, each use asks for
``stream(seed, name)``: the root key folded with a fixed number per name. Names are
listed in `STREAMS`; adding one never changes another's key. Inside the train step the
key is ``fold_in(state.rng, state.step)`` (`genjax.state.step_key`), which is
independent of these.
"""

from __future__ import annotations

import jax

# name -> fold-in constant. Append new names; never renumber (results depend on them).
STREAMS = {
    "init": 0,           # parameters, spectral-norm vectors and the state's own rng
    "sample_grid": 1,    # the fixed latents of every sample grid of a run
    "eval_samples": 2,   # the samples scored by FID/IS/KID/precision/recall
    "eval_metrics": 3,   # other evaluation draws (posterior noise, conditional-class checks)
    "eval_bound": 4,     # the timesteps and noise of a diffusion model's variational bound
    "data_init": 5,      # draws of a data-dependent initialisation (a flow's dequantisation)
}


def stream(seed: int, name: str) -> jax.Array:
    """The key of stream ``name`` for run seed ``seed`` (a typed ``jax.random.key``)."""
    if name not in STREAMS:
        raise ValueError(f"Unknown random stream {name!r}; valid: {', '.join(STREAMS)}.")
    return jax.random.fold_in(jax.random.key(seed), STREAMS[name])
