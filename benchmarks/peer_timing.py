"""The timing loop of the peer references (`benchmarks.torch_reference`,
`benchmarks.keras_reference`): the same windows and fields as genjax's rows."""

from __future__ import annotations

import time
from typing import Callable

import numpy as np


def timed_row(step: Callable[[], None], examples_per_step: int, seconds: float,
              windows: int) -> dict:
    """Time a synchronous ``step()`` (first call, 2 warm-up calls, then ``windows`` windows
    of ``seconds``): the median examples/s with its min and max, ms per step and the first
    call's seconds (compilation, where the framework compiles)."""
    start = time.perf_counter()
    step()
    first = time.perf_counter() - start
    for _ in range(2):
        step()
    rates = []
    for _ in range(windows):
        k, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            step()
            k += 1
        rates.append(k * examples_per_step / (time.perf_counter() - start))
    rate = float(np.median(rates))
    return {"input": "in memory", "examples_per_sec": round(rate, 1), "min": round(min(rates), 1),
            "max": round(max(rates), 1), "ms_per_step": round(1000 * examples_per_step / rate, 2),
            "first_call_s": round(first, 2)}
