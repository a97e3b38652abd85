"""Where the diffusion U-Net's gradient spends its time on XLA:CPU, by kind of operation.

  python -m benchmarks.unet_profile [--config=ddpm_mnist] [--batch_size=64] [--out=...]

Compiles the gradient of the config's U-Net (ε-regression at fixed timesteps, Eigen's
dots as the train step picks them for a net with convolutions), times it (best of 5),
then records 3 calls with `jax.profiler` and sums the executor's per-operation trace
events by kind (the fusion's name without its number: ``transpose_copy_fusion``,
``wrapped_reduce-window``, ...). The convolutions run inside Eigen's thread pool, so
their own events cover only their dispatch: the wall time the operation events leave
uncovered is reported as ``untraced_ms``, which is mostly convolution arithmetic.
Writes ``--out`` (JSON, with the machine) and prints the table.
"""

from __future__ import annotations

import collections
import glob
import gzip
import json
import os
import re
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags  # noqa: E402

from benchmarks import machine  # noqa: E402

_CALLS = 3


def op_kinds(trace: dict) -> tuple[dict[str, float], float]:
    """({kind: ms per call}, ms per call that operation events cover) from a perfetto
    trace of ``_CALLS`` calls: the events of one HLO operation each (``args.hlo_op``);
    the executor's own and Python's events are left out."""
    events = [e for e in trace["traceEvents"]
              if e.get("ph") == "X" and "hlo_op" in e.get("args", {})]
    kinds = collections.Counter()
    for e in events:
        kinds[re.sub(r"\.\d+$", "", e["name"])] += e.get("dur", 0) / 1000 / _CALLS
    covered, begin, end = 0.0, None, None  # the union of the events' intervals
    for e in sorted(events, key=lambda e: e["ts"]):
        start, stop = e["ts"], e["ts"] + e.get("dur", 0)
        if end is not None and start <= end:
            end = max(end, stop)
            continue
        if end is not None:
            covered += end - begin
        begin, end = start, stop
    if end is not None:
        covered += end - begin
    return dict(kinds.most_common()), covered / 1000 / _CALLS


def main(_):
    import importlib

    import jax
    import jax.numpy as jnp
    import numpy as np

    from genjax import xla_cpu
    from genjax.tasks import diffusion as tdiff

    config = importlib.import_module(f"genjax.configs.{flags.FLAGS.config}").get_config()
    model = tdiff.build_model(config)
    b = flags.FLAGS.batch_size
    x = jnp.asarray(np.random.default_rng(0).normal(size=(b, 28, 28, 1)), jnp.float32)
    t = jnp.arange(b) * (config.timesteps // b)
    labels = jnp.arange(b) % config.num_classes if config.num_classes else None
    params = model.init(jax.random.key(0), x, t, labels)
    loss = lambda p: jnp.mean(jnp.square(model.apply(p, x, t, labels) - x))
    options = xla_cpu.cpu_compiler_options("auto", jax.grad(loss), params)
    grad = jax.jit(jax.grad(loss), compiler_options=options)
    flops = grad.lower(params).cost_analysis().get("flops", 0.0)
    jax.block_until_ready(grad(params))
    best = min(_time(lambda: jax.block_until_ready(grad(params))) for _ in range(5))
    with tempfile.TemporaryDirectory() as folder:
        jax.profiler.start_trace(folder, create_perfetto_trace=True)
        start = time.perf_counter()
        for _ in range(_CALLS):
            jax.block_until_ready(grad(params))
        traced_ms = 1000 * (time.perf_counter() - start) / _CALLS
        jax.profiler.stop_trace()
        path = glob.glob(os.path.join(folder, "**", "*.json.gz"), recursive=True)[0]
        with gzip.open(path) as f:
            kinds, covered = op_kinds(json.load(f))
    if covered > traced_ms:
        raise RuntimeError(f"Operation events cover {covered:.1f} ms of a {traced_ms:.1f} ms "
                           "call: the trace holds events this script does not expect.")
    out = {"machine": machine.describe(), "config": flags.FLAGS.config, "batch_size": b,
           "cpu_dots": "eigen" if options else "ynnpack", "gflop": round(flops / 1e9, 2),
           "best_ms": round(1000 * best, 1), "traced_call_ms": round(traced_ms, 1),
           "ops_cover_ms": round(covered, 1), "untraced_ms": round(traced_ms - covered, 1),
           "ms_by_kind": {k: round(v, 2) for k, v in kinds.items()},
           "command": "python -m benchmarks.unet_profile " + " ".join(sys.argv[1:])}
    with open(flags.FLAGS.out, "w") as f:
        json.dump(out, f, indent=1)
    print(f"gradient of {flags.FLAGS.config} at batch {b}: {out['best_ms']} ms "
          f"({flops / 1e9 / best:.1f} GFLOP/s); traced calls {out['traced_call_ms']} ms, "
          f"operation events cover {out['ops_cover_ms']} ms, untraced (convolutions) "
          f"{out['untraced_ms']} ms")
    for k, v in list(kinds.items())[:15]:
        print(f"{v:8.2f} ms  {k}")


def _time(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


if __name__ == "__main__":  # flags only here: tests import op_kinds beside other modules' flags
    flags.DEFINE_string("config", "ddpm_mnist", "A diffusion config in genjax/configs.")
    flags.DEFINE_integer("batch_size", 64, "Batch size.")
    flags.DEFINE_string("out", os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                            "results", "unet_profile.json"), "Result file.")
    app.run(main)
