"""Throughput of the input pipeline alone (no model), in examples per second.

  python -m benchmarks.input_pipeline [--batch_size=128] [--seconds=5]

Measures each preprocessing mode on the embedded mnist5k dataset, after one warm-up
epoch (so the in-memory cache is filled), and writes
``benchmarks/results/input_pipeline.json``. The pipeline must stay far above the
train steps' examples/s so that it is never the bottleneck.
"""

import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from benchmarks import machine  # noqa: E402
from absl import app, flags, logging  # noqa: E402

from genjax import data  # noqa: E402

_BATCH = flags.DEFINE_integer("batch_size", 128, "Global batch size.")
_SECONDS = flags.DEFINE_float("seconds", 5.0, "Measurement window per mode.")
_OUT = flags.DEFINE_string("out", os.path.join(os.path.dirname(__file__), "results",
                                               "input_pipeline.json"), "Result file.")


def measure(spec: data.DataSpec, batch_size: int, seconds: float) -> float:
    """Examples/s of ``train_iterator`` after one warm-up epoch."""
    it = data.train_iterator(spec, "train", global_batch_size=batch_size)
    for _ in range(4000 // batch_size + 1):
        next(it)
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        next(it)
        n += 1
    return n * batch_size / (time.perf_counter() - start)


def main(_):
    logging.set_verbosity(logging.WARNING)
    results = {"dataset": "mnist5k", "batch_size": _BATCH.value, "cpu_count": os.cpu_count(),
               "machine": machine.describe(), "examples_per_sec": {}}
    for mode in data.PREPROCESS_MODES:
        rate = measure(data.DataSpec(preprocess=mode), _BATCH.value, _SECONDS.value)
        results["examples_per_sec"][mode] = round(rate)
        print(f"{mode:18s} {rate:12,.0f} examples/s")
    os.makedirs(os.path.dirname(_OUT.value), exist_ok=True)
    with open(_OUT.value, "w") as f:
        json.dump(results, f, indent=2)


if __name__ == "__main__":
    app.run(main)
