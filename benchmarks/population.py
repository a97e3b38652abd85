"""Populations on a CPU: K members under each strategy against K runs one after another,
with PyTorch doing the same K runs the ways its users would.

  python -m benchmarks.population                 # the docs/benchmarks.md table, this machine
  python -m benchmarks.population --configs=dcgan_mnist --k=8 --seconds=5

For each config at ``--batch`` examples per member and step, the aggregate real
examples/s (every member's, as benchmarks/throughput.py counts them: batch * n_critic)
of

* ``sequential``: one member's step in this process on every core, what K genjax runs
  one after another reach;
* ``vmap`` and ``map``: the population's step over K seeds (`genjax.population.make_step`)
  in this process, under the driver the loop uses;
* ``workers``: one process per core, single-threaded and pinned as `genjax.workers` runs
  them, each timing one member's step in the same windows: the sum of their rates;
* PyTorch (`benchmarks.torch_reference`, eager, the same update as genjax's default):
  one process on every core, and one single-threaded process per core, where it has
  the model.

Each on a fixed batch already in memory (the train step, not the input pipeline),
the median of ``--windows`` windows of ``--seconds``; also one member's state in MB and
the peak memory of the processes. ``default`` is the strategy ``auto`` picks here;
``default / sequential`` is the speed-up a population gives over K separate runs.
Writes ``--out`` (default ``benchmarks/results/population.json``) after each config, a row
per config (one measured again replaces its row; each row names its command), and prints
the table.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags, logging  # noqa: E402

from benchmarks import machine, throughput  # noqa: E402
from benchmarks.peer_timing import timed_windows  # noqa: E402

_K = flags.DEFINE_integer("k", 8, "Members of each population.")
_BATCH = flags.DEFINE_integer("batch", 64, "Examples per member and step.")
_STRATEGIES = flags.DEFINE_list("strategies", ["vmap", "map", "workers"], "Strategies to time.")
_ROLE = flags.DEFINE_enum("role", "", ["", "genjax", "torch"],
                          "Internal: a timing process of the per-core rows.")
_DEFAULTS = {"configs": ["vae_mnist", "gan_mlp_mnist", "dcgan_mnist", "wgan_gp_mnist",
                         "ddpm_mnist", "realnvp_mnist", "gated_pixelcnn_mnist", "rbm_pcd_mnist"]}
_READY, _RESULT = "@@ready", "@@result "  # the per-core processes' protocol lines


def _config(name: str):
    return throughput._config(name, _BATCH.value)


def _gan_update(config) -> str:
    """The update genjax's step runs (the PyTorch rows run the same)."""
    return config.get("gan_update", "alternating")


def population_row(name: str, strategy: str) -> dict:
    """Aggregate examples/s of ``--k`` seeds of ``name`` under ``strategy`` (``vmap`` or
    ``map``) in this process, as the loop compiles it; and one member's state in MB."""
    import jax
    import numpy as np

    from genjax import parallel, population
    from genjax.tasks import TASKS

    config = _config(name)
    config.population.seeds, config.population.strategy = _K.value, strategy
    members, shape = population.roster(config), (28, 28, 1)
    task = TASKS[config.task](population.member_config(config, members[0]), shape)
    init = jax.jit(task.init)  # members of seeds only: one task, K keys
    state = population.stack([init(jax.random.key(m.seed)) for m in members], members)
    step = population.make_step(config, members, shape, strategy)
    d = parallel.make_driver("none", step, donate=True, cpu_dots=config.get("cpu_dots", "auto"))
    n = task.examples_per_step
    one = np.random.default_rng(0).uniform(-1 if config.preprocess == "symmetric" else 0, 1,
                                           (n, *shape)).astype(np.float32)
    batch = d.put_batch({"image": np.stack([one] * _K.value),
                         "label": np.zeros((_K.value, n), np.int32)})
    mb = sum(x.nbytes for x in jax.tree.leaves(state)) / _K.value / 2**20
    first, rates, _ = timed_windows(d.step, d.place(state), lambda: batch, _K.value * n,
                                    throughput._SECONDS.value, throughput._WINDOWS.value)
    return {"examples_per_sec": round(float(np.median(rates)), 1), "min": round(min(rates), 1),
            "max": round(max(rates), 1), "first_call_s": round(first, 2),
            "state_mb_per_member": round(mb, 2), "peak_memory_mb": throughput._peak_memory_mb()}


def per_core_row(role: str, name: str) -> dict:
    """One ``role`` process per core (`genjax.workers`' environment and pinning), each
    timing one member's step in the same windows after all are ready: their summed
    median examples/s, and each process's peak memory."""
    from genjax import workers

    cores = workers.cores()[:_K.value]  # as many as the population's workers
    command = [sys.executable, "-m", "benchmarks.population", f"--role={role}",
               f"--configs={name}", f"--batch={_BATCH.value}",
               f"--seconds={throughput._SECONDS.value}", f"--windows={throughput._WINDOWS.value}"]
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    procs = []
    try:
        for core in cores:
            procs.append(subprocess.Popen(
                command, env=workers.worker_env(core if len(cores) > 1 else None), cwd=root,
                text=True, stdin=subprocess.PIPE, stdout=subprocess.PIPE))
        for p in procs:
            _expect(p, _READY)
        for p in procs:  # every process times the same windows
            p.stdin.write("go\n")
            p.stdin.flush()
        found = [json.loads(_expect(p, _RESULT)) for p in procs]
        for p in procs:
            p.wait(timeout=60)
    finally:  # however it ends, no timing process is left running
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    return {"examples_per_sec": round(sum(f["examples_per_sec"] for f in found), 1),
            "processes": len(procs), "per_process": [f["examples_per_sec"] for f in found],
            "peak_memory_mb": [f["peak_memory_mb"] for f in found]}


def _expect(proc: subprocess.Popen, tag: str) -> str:
    """The rest of ``proc``'s next line starting with ``tag`` (other lines are passed on)."""
    for line in proc.stdout:
        if line.startswith(tag):
            return line[len(tag):].strip()
        print(line, end="")
    raise RuntimeError(f"a timing process ({' '.join(proc.args[3:5])}) ended with status "
                       f"{proc.wait()} before {tag!r}; its errors are above.")


def _timing_process(role: str) -> None:
    """The per-core side: prepare one member's step (genjax's, or PyTorch's on one
    thread), say ready, wait for ``go``, time the windows, print the result."""
    import time

    import numpy as np

    from genjax import workers

    workers.settle()  # pinned to its core, as a population's worker
    name = throughput._CONFIGS.value[0]
    if role == "genjax":
        prepared = throughput.prepare(name, _BATCH.value)
        window = prepared.window
    else:
        import torch

        from benchmarks import torch_reference

        torch.set_num_threads(1)
        config = _config(name)
        step, n = torch_reference.make_step(config, _gan_update(config))
        for _ in range(3):
            step()

        def window() -> float:
            k, start = 0, time.perf_counter()
            while time.perf_counter() - start < throughput._SECONDS.value:
                step()
                k += 1
            return k * n / (time.perf_counter() - start)
    print(_READY, flush=True)
    sys.stdin.readline()
    rates = [window() for _ in range(throughput._WINDOWS.value)]
    print(_RESULT + json.dumps({"examples_per_sec": float(np.median(rates)),
                                "peak_memory_mb": throughput._peak_memory_mb()}), flush=True)


def measure(name: str, torch_ref) -> dict:
    """Every row of config ``name`` (see the module docstring), in this order."""
    from genjax import population

    config = _config(name)
    row = {"config": name, "batch": _BATCH.value, "k": _K.value,
           "n_critic": config.get("n_critic", 1),
           "default": population.strategy(config)}
    throughput.reset_peak_memory()  # each in-process row its own peak
    sequential = throughput.measure(name, _BATCH.value)
    row["sequential"] = {k: sequential[k] for k in ("examples_per_sec", "min", "max",
                                                     "peak_memory_mb")}
    for strategy in _STRATEGIES.value:
        throughput.reset_peak_memory()
        row[strategy] = per_core_row("genjax", name) if strategy == "workers" else \
            population_row(name, strategy)
    if torch_ref is not None and torch_ref.supports(name):
        update = _gan_update(config) if config.task == "gan" else "shared"
        found = torch_ref.measure(name, config, throughput._SECONDS.value,
                                  throughput._WINDOWS.value, update=update)
        row["torch_sequential"] = {"examples_per_sec": found["examples_per_sec"],
                                   "framework": found["framework"]}
        row["torch_per_core"] = per_core_row("torch", name)
    base = row["sequential"]["examples_per_sec"]
    row["speedup"] = {s: round(row[s]["examples_per_sec"] / base, 2) for s in _STRATEGIES.value}
    return row


def table(results: list[dict]) -> str:
    """The docs/benchmarks.md table: aggregate examples/s of K members."""
    lines = ["| config | sequential | vmap | map | workers | default / sequential | "
             "PyTorch sequential | PyTorch per core | state per member (MB) |",
             "|---" * 9 + "|"]
    rate = lambda r, key: f"{r[key]['examples_per_sec']:,.0f}" if key in r else "–"  # noqa: E731
    for r in results:
        mb = next((r[s]["state_mb_per_member"] for s in ("vmap", "map") if s in r), None)
        lines.append(
            f"| `{r['config']}` | {rate(r, 'sequential')} | {rate(r, 'vmap')} | {rate(r, 'map')} "
            f"| {rate(r, 'workers')} | {r['speedup'].get(r['default'], float('nan')):.2f} "
            f"({r['default']}) | {rate(r, 'torch_sequential')} | {rate(r, 'torch_per_core')} "
            f"| {'–' if mb is None else f'{mb:.1f}'} |")
    return "\n".join(lines)


def main(_) -> None:
    import jax

    logging.set_verbosity(logging.WARNING)
    if _ROLE.value:
        _timing_process(_ROLE.value)
        return
    try:
        from benchmarks import torch_reference as torch_ref
    except ImportError:
        torch_ref = None
    torch_ref = torch_ref if throughput._TORCH.value else None
    out = throughput._OUT.value or os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "results", "population.json")
    found = json.load(open(out))["results"] if os.path.exists(out) else []
    results = {r["config"]: r for r in found}  # a config measured again replaces its row
    for name in throughput._CONFIGS.value:
        results[name] = {**measure(name, torch_ref),
                         "command": " ".join(["python -m benchmarks.population", *sys.argv[1:]])}
        print(json.dumps(results[name]), flush=True)
        with open(out, "w") as f:  # after each config: an interrupted run keeps its rows
            json.dump({"device": throughput._device_name(), "cpu_count": os.cpu_count(),
                       "cpu": machine.cpu(), "jax": jax.__version__,
                       "torch": None if torch_ref is None else torch_ref.version(),
                       "results": list(results.values())}, f, indent=2)
    results = list(results.values())
    print(table(results))
    print("wrote", out)


if __name__ == "__main__":
    for flag, value in _DEFAULTS.items():
        flags.FLAGS.set_default(flag, value)
    app.run(main)
