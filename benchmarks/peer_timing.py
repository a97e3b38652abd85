"""The timing loops of the benchmarks: `timed_windows` for genjax's compiled steps,
`timed_row` for the peer references (`benchmarks.torch_reference`,
`benchmarks.keras_reference`), with the same windows and fields."""

from __future__ import annotations

import time
from typing import Callable

import numpy as np


def timed_row(step: Callable[[], None], examples_per_step: int, seconds: float,
              windows: int, sync: Callable[[], None] = lambda: None) -> dict:
    """Time ``step()`` (first call, 2 warm-up calls, then ``windows`` windows of
    ``seconds``): the median examples/s with its min and max, ms per step and the first
    call's seconds (compilation, where the framework compiles). ``sync`` waits for the
    queued work (``torch.cuda.synchronize`` on a GPU, whose calls return early); it runs
    after the first call, the warm-up and each window, never between steps."""
    start = time.perf_counter()
    step()
    sync()
    first = time.perf_counter() - start
    for _ in range(2):
        step()
    sync()
    rates = []
    for _ in range(windows):
        k, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            step()
            k += 1
        sync()
        rates.append(k * examples_per_step / (time.perf_counter() - start))
    rate = float(np.median(rates))
    return {"input": "in memory", "examples_per_sec": round(rate, 1), "min": round(min(rates), 1),
            "max": round(max(rates), 1), "ms_per_step": round(1000 * examples_per_step / rate, 2),
            "first_call_s": round(first, 2)}


def timed_windows(step, state, batches, examples_per_call: int, seconds: float, windows: int):
    """(first call s, [examples/s per window], state): ``step`` on ``batches()`` after warm-up."""
    import jax

    start = time.perf_counter()
    state, _ = step(state, batches())
    jax.block_until_ready(state)
    first = time.perf_counter() - start
    for _ in range(2):
        state, _ = step(state, batches())
    jax.block_until_ready(state)
    rates = []
    for _ in range(windows):
        rate, state = one_window(step, state, batches, examples_per_call, seconds)
        rates.append(rate)
    return first, rates, state


def one_window(step, state, batches, examples_per_call: int, seconds: float):
    """(examples/s, state) of the calls of ``step`` on ``batches()`` that start within
    ``seconds``, waited for."""
    import jax

    n, start, queued = 0, time.perf_counter(), []
    while time.perf_counter() - start < seconds:
        state, metrics = step(state, batches())
        queued.append(metrics)
        if len(queued) > 2:  # at most two calls in flight: unbounded, a slow step's
            jax.block_until_ready(queued.pop(0))  # window ran on long after its end
        n += 1
    jax.block_until_ready(state)
    return n * examples_per_call / (time.perf_counter() - start), state
