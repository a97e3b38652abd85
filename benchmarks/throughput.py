"""Train-step throughput of every experiment config, with PyTorch and Keras side by side.

  python benchmarks/throughput.py                      # the docs/benchmarks.md table, this machine
  python -m benchmarks.throughput --configs=dcgan_mnist --batch_sizes=64 --seconds=5
  XLA_FLAGS=--xla_force_host_platform_device_count=4 python -m benchmarks.throughput \\
      --parallel=none,pmap,mesh --torch=false --stock= --pipeline= --out=...

For each config and global batch size: build the task, compile its step under each
data-parallel driver of ``--parallel`` (state donated) with ``--steps_per_call`` steps per
call, warm up, then time ``--windows`` windows of ``--seconds`` on a fixed batch already
on the device, the variants' windows taken in turn (`measure_in_turn`: A B C A B C, so
that the machine's drift hits each alike) and report the median examples/s (real images consumed: batch * n_critic
for WGAN-GP) with the min and max, ms per step, the step's compile time (tracing,
lowering and XLA compilation, from `jax.monitoring`'s compile events) and its whole
first call in seconds, the process's peak memory, the step's FLOPs from XLA's cost
analysis and the achieved GFLOP/s against the machine's measured peak (the fastest large
float32 matmul any engine here ran: XLA with either CPU dot library, and PyTorch when
installed).

Also: ``--stock`` rows (``config@batch``) with Flax's stock transposed convolutions for the
fast-layer speed-up; ``--updates`` GAN rows timed under each ``gan_update`` beside the
peers' steps that run the same algorithm (`like_for_like_rows`);
``--bf16`` rows computing in bfloat16 (`genjax.precision`);
``--pipeline`` rows fed by the real input pipeline (mnist5k, the config's preprocessing)
instead of a fixed batch, once through each source (``tfds``: tf.data's threads;
``memory``: the split held on the device, `genjax.data.pipeline`), their windows taken
in turn with fixed-batch windows of the same step so that the ratio is free of the
machine's drift (`paired_windows`); and the peers: the
same textbook models and steps

* in PyTorch (``pip install torch==2.13.0``; `benchmarks.torch_reference`), eager (the
  idiomatic step with one generator forward, and for one-critic-update GANs also the
  two-forward step genjax's default runs) and with ``torch.compile``;
* in Keras 3 on TensorFlow (`benchmarks.keras_reference`), one ``tf.function`` step
  without and with XLA,

each only where installed, timed the same way in the same run, with the ratio genjax /
the fastest peer row. Writes ``--out`` (default ``benchmarks/results/<device>.json``).
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
import re
import resource
import sys
import time
from typing import Any, Callable

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")  # the Keras peer as users run it
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags, logging  # noqa: E402

from benchmarks import machine  # noqa: E402
from benchmarks.peer_timing import one_window, timed_windows  # noqa: E402

_CONFIGS = flags.DEFINE_list("configs", ["vae_mnist", "gan_mlp_mnist", "dcgan_mnist",
                                         "lsgan_mnist", "wgan_gp_mnist", "sngan_mnist",
                                         "ddpm_mnist", "gated_pixelcnn_mnist", "realnvp_mnist"],
                             "Configs to time.")
_BATCH_SIZES = flags.DEFINE_list("batch_sizes", ["64", "256"], "Global batch sizes (empty: "
                                 "each config's own).")
_SECONDS = flags.DEFINE_float("seconds", 5.0, "Length of one timing window.")
_WINDOWS = flags.DEFINE_integer("windows", 3, "Timing windows (median, min and max reported).")
_PARALLEL = flags.DEFINE_list("parallel", ["none"], "Data-parallel drivers to time.")
_STEPS_PER_CALL = flags.DEFINE_list("steps_per_call", ["1"], "Train steps per compiled call.")
_CPU_DOTS = flags.DEFINE_list("cpu_dots", ["config"], "XLA:CPU dot libraries to time "
                              "(config: each config's own cpu_dots; auto, ynnpack, eigen, "
                              "eigen+ynn; see genjax.xla_cpu.cpu_compiler_options).")
_STOCK = flags.DEFINE_list("stock", ["dcgan_mnist@64", "wgan_gp_mnist@64"],
                           "config@batch rows also timed with Flax's stock transposed convs.")
_BF16 = flags.DEFINE_list("bf16", ["vae_mnist@256", "dcgan_mnist@64", "wgan_gp_mnist@64"],
                          "config@batch rows also timed with bfloat16 compute.")
_PIPELINE = flags.DEFINE_list("pipeline", ["vae_mnist@128", "gan_mlp_mnist@64", "dcgan_mnist@64",
                                           "wgan_gp_mnist@64"],
                              "config@batch rows also timed fed by the real input pipeline, "
                              "from each source (tfds, memory).")
_UPDATES = flags.DEFINE_list("updates", ["gan_mlp_mnist@64", "dcgan_mnist@64"],
                             "config@batch GAN rows (one critic update per step) timed under "
                             "every gan_update, each beside the peers' steps that run the same "
                             "algorithm (like for like).")
_TORCH = flags.DEFINE_boolean("torch", True, "Time the PyTorch reference too, if installed.")
_TORCH_COMPILE = flags.DEFINE_boolean("torch_compile", True, "Also time PyTorch with "
                                      "torch.compile (needs --torch and a C++ compiler).")
_KERAS = flags.DEFINE_boolean("keras", True, "Time the Keras reference too, if installed.")
_OUT = flags.DEFINE_string("out", None, "Result file (default results/<device>.json).")
_TABLE = flags.DEFINE_string("table", None, "Only print the docs/benchmarks.md tables of this result file.")


def _device_name() -> str:
    """A file name for this machine: the accelerator's kind, or the CPU model and cores."""
    import jax

    device = jax.devices()[0]
    name = (device.device_kind if device.platform != "cpu"
            else f"cpu {os.cpu_count()}core {machine.cpu()['model']}")
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


def _peak_memory_mb() -> float:
    """The device's peak memory where the backend tracks it (GPU), else the process's peak
    resident memory (XLA:CPU keeps no count) since it started or since
    `reset_peak_memory`: Linux's VmHWM, which, unlike getrusage's maximum, a process
    started by another does not inherit."""
    import jax

    stats = jax.devices()[0].memory_stats() or {}
    if "peak_bytes_in_use" in stats:
        return round(stats["peak_bytes_in_use"] / 2**20, 1)
    try:
        with open("/proc/self/status") as f:
            hwm = next(line for line in f if line.startswith("VmHWM:"))
        return round(int(hwm.split()[1]) / 1024, 1)
    except (OSError, StopIteration):
        return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def reset_peak_memory() -> None:
    """Start the host's peak resident memory (VmHWM) afresh where Linux allows it, so that
    each row of a run reports its own peak (the accelerator's peak cannot be reset)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


_COMPILE_EVENTS = ("/jax/core/compile/jaxpr_trace_duration",
                   "/jax/core/compile/jaxpr_to_mlir_module_duration",
                   "/jax/core/compile/backend_compile_duration")
_compile_seconds = [0.0]  # running total of the compile events of this process


def _count_compile(event: str, duration: float, **kwargs) -> None:
    if event in _COMPILE_EVENTS:
        _compile_seconds[0] += duration


def paired_windows(step, state, feeds: dict, examples_per_call: int, seconds: float,
                   windows: int) -> tuple[dict[str, list[float]], object]:
    """({feed: [examples/s per window]}, state): one window per feed in turn, ``windows``
    times (A B A B ...), so a drift of the machine's speed hits every feed alike and the
    per-pair ratios compare like with like. Each feed is warmed up first."""
    import jax

    for batches in feeds.values():
        state, _ = step(state, batches())
    jax.block_until_ready(state)
    rates = {name: [] for name in feeds}
    for _ in range(windows):
        for name, batches in feeds.items():
            rate, state = one_window(step, state, batches, examples_per_call, seconds)
            rates[name].append(rate)
    return rates, state


def matmul_peak_gflops(size: int = 4096) -> dict[str, float]:
    """GFLOP/s of the fastest of 5 float32 [size, size] matmuls, per engine available."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from genjax import xla_cpu

    a = jnp.asarray(np.random.default_rng(0).normal(size=(size, size)), jnp.float32)
    out = {}
    dots = ("ynnpack", "eigen") if jax.default_backend() == "cpu" else ("default",)
    for dots_name in dots:
        opts = None if dots_name == "default" else xla_cpu.cpu_compiler_options(
            dots_name, jnp.matmul, a, a)
        f = jax.jit(jnp.matmul, compiler_options=opts)
        jax.block_until_ready(f(a, a))
        best = min(_time(lambda: jax.block_until_ready(f(a, a))) for _ in range(5))
        out[f"xla_{dots_name}"] = round(2 * size**3 / best / 1e9, 1)
    torch_ref = _torch()
    if torch_ref is not None:
        out["torch"] = torch_ref.matmul_gflops(size)
    return out


def _dots_used(options: dict | None) -> str:
    """The library name `genjax.xla_cpu.cpu_compiler_options` chose, from its options."""
    if options is None:
        return "ynnpack"
    return "eigen+ynn" if options["xla_cpu_experimental_ynn_fusion_type"] else "eigen"


def _time(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _peer(module: str, wanted: flags.FlagHolder):
    """`benchmarks.<module>` (a peer's reference), or None when its framework is not
    installed or ``wanted`` is off."""
    if not wanted.value:
        return None
    try:
        return importlib.import_module(f"benchmarks.{module}")
    except ImportError:
        return None


def _torch():
    """`benchmarks.torch_reference`, or None (PyTorch not installed or not wanted)."""
    return _peer("torch_reference", _TORCH)


def _keras():
    """`benchmarks.keras_reference`, or None (Keras not installed or not wanted)."""
    return _peer("keras_reference", _KERAS)


def peer_rows(name: str, config) -> list[tuple[object, dict]]:
    """(reference module, its ``measure`` keywords) for each peer row of config ``name``."""
    rows = []
    torch_ref, keras_ref = _torch(), _keras()
    if torch_ref is not None and torch_ref.supports(name):
        idioms = ("shared", "alternating") if config.task == "gan" and config.n_critic == 1 \
            else ("shared",)
        rows += [(torch_ref, {"update": update, "compiled": False}) for update in idioms]
        if _TORCH_COMPILE.value:
            rows.append((torch_ref, {"update": "shared", "compiled": True}))
    if keras_ref is not None and keras_ref.supports(name):
        update = "simultaneous" if config.task == "gan" and config.n_critic == 1 else "alternating"
        rows += [(keras_ref, {"update": update, "xla": xla}) for xla in (False, True)]
    return rows


def _config(name: str, batch_size: int | None, **overrides):
    config = importlib.import_module(f"genjax.configs.{name}").get_config()
    if batch_size:
        config.batch_size = batch_size
    config.update(overrides)
    return config


def like_for_like_rows(name: str, batch_size: int) -> list[tuple[object, dict]]:
    """The ``--updates`` rows of config ``name``: (None, genjax step options) for each
    update other than the default row's, and (peer module, its ``measure`` keywords) for
    each peer step running one of the updates (PyTorch eager and compiled all three,
    Keras with and without XLA the alternating and simultaneous ones)."""
    from genjax.steps.gan import UPDATES

    if _config(name, batch_size).get("n_critic", 1) != 1:
        raise ValueError(f"--updates={name}@{batch_size}: the one-pass updates need n_critic=1.")
    rows: list[tuple[object, dict]] = [(None, {"gan_update": u}) for u in UPDATES[1:]]
    torch_ref, keras_ref = _torch(), _keras()
    if torch_ref is not None and torch_ref.supports(name):
        modes = (False, True) if _TORCH_COMPILE.value else (False,)
        rows += [(torch_ref, {"update": u, "compiled": c}) for u in UPDATES for c in modes]
    if keras_ref is not None and keras_ref.supports(name):
        rows += [(keras_ref, {"update": u, "xla": x}) for u in ("alternating", "simultaneous")
                 for x in (False, True)]
    return rows


def like_for_like_table(results: list[dict]) -> str:
    """One row per GAN config, batch and update: genjax beside each peer step that runs the
    same update, and genjax / the fastest of them."""
    def update(r):
        return r.get("update") or r.get("step_options", {}).get("gan_update", "alternating")

    ours = [r for r in results if r["framework"] == "genjax" and r["layers"] == "fast"
            and r["parallel"] == "none" and r["input"] == "in memory"
            and r.get("compute_dtype", "float32") == "float32"
            and set(r.get("step_options") or {}) <= {"gan_update"}]
    keys = sorted({(r["config"], r["batch_size"], r["update"]) for r in results
                   if r["framework"] != "genjax" and r.get("update")}, key=str)
    lines = ["| config | batch | update | genjax | peer steps, same update (examples/s) | "
             "genjax / best |", "|---" * 6 + "|"]
    for config, batch, u in keys:
        same = lambda r: r["config"] == config and r["batch_size"] == batch and update(r) == u
        mine = next((r for r in ours if same(r)), None)
        peers = [r for r in results if r["framework"] != "genjax" and same(r)]
        if mine is None or not peers:
            continue
        best = max(peers, key=lambda r: r["examples_per_sec"])
        label = lambda r: re.sub(r" \d[\w.+]*( \(TensorFlow [\d.]+\))?", "",
                                 r["framework"].split(", ")[0])
        listed = "; ".join(f"{label(r).replace('torch torch', 'torch')} "
                           f"{r['examples_per_sec']:,.0f}" for r in peers)
        lines.append(f"| `{config}` | {batch} | {u} | {mine['examples_per_sec']:,.0f} | "
                     f"{listed} | {mine['examples_per_sec'] / best['examples_per_sec']:.2f} |")
    return "\n".join(lines)


# how a row is fed: a fixed batch on the device, or the input pipeline from one source
_INPUTS = {None: "in memory", "tfds": "tfds pipeline", "memory": "memory source"}


@dataclasses.dataclass
class Prepared:
    """A genjax row ready to time: its compiled step, state and fixed batch after the first
    call and the warm-up (`prepare`), and ``row(rates)`` making the row of its windows."""

    step: Callable
    state: Any
    batches: Callable[[], Any]
    examples_per_call: int
    row: Callable[..., dict]
    feed: Callable[[], Any] | None = None  # the real input pipeline (``source`` rows)

    def window(self) -> float:
        rate, self.state = one_window(self.step, self.state, self.batches,
                                      self.examples_per_call, _SECONDS.value)
        return rate


def prepare(name: str, batch_size: int | None, *, driver: str = "none", steps_per_call: int = 1,
            cpu_dots: str = "config", fast_layers: bool = True, source: str | None = None,
            compute_dtype: str = "float32", step_options: dict | None = None) -> Prepared:
    """Build, compile and warm up one genjax row (see the module docstring); ``source``:
    also feed the real input pipeline from this `genjax.data.SOURCES` entry;
    ``step_options``: config overrides of the GAN step (``gan_update``); ``cpu_dots``
    "config": the config's own choice."""
    import jax
    import numpy as np

    from genjax import data as gdata
    from genjax import loop, parallel, xla_cpu
    from genjax.tasks import TASKS

    config = _config(name, batch_size, parallel=driver, fast_layers=fast_layers,
                     compute_dtype=compute_dtype, **(step_options or {}))
    parallel.check_batch(driver, config.batch_size)
    cpu_dots = config.get("cpu_dots", "auto") if cpu_dots == "config" else cpu_dots
    shape = (28, 28, 1)
    task = TASKS[config.task](config, shape, parallel.step_axis(driver))
    d = parallel.make_driver(driver, task.train_step, donate=True, steps_per_call=steps_per_call,
                             cpu_dots=cpu_dots)
    state = d.place(jax.jit(task.init)(jax.random.key(0)))
    n = task.examples_per_step
    one = {"image": np.random.default_rng(0).uniform(
        -1 if config.preprocess == "symmetric" else 0, 1, (n, *shape)).astype(np.float32),
        "label": np.zeros(n, np.int32)}
    # The one-device step's FLOPs (a multi-device step is built with a named axis that
    # only its driver binds, so the one-device task is built for them).
    one_device = task if driver == "none" else TASKS[config.task](config, shape, None)
    flops = jax.jit(one_device.train_step).lower(d.local(state), one).cost_analysis().get("flops")
    opts = xla_cpu.cpu_compiler_options(cpu_dots, one_device.train_step, d.local(state), one)
    fixed = d.put_batch(one if steps_per_call == 1 else
                        {k: np.stack([v] * steps_per_call) for k, v in one.items()})
    compiled_before = _compile_seconds[0]
    first, _, state = timed_windows(d.step, state, lambda: fixed, n * steps_per_call,
                                    _SECONDS.value, 0)
    compile_s = _compile_seconds[0] - compiled_before
    feed = None
    if source:
        config.data_source = source
        it = gdata.train_iterator(loop.data_specs(config)[0], "train", global_batch_size=n)
        feed = lambda: d.put_batch(loop.next_batches(it, steps_per_call, steps_per_call > 1))

    def row(rates: list[float], **extra) -> dict:
        rate = float(np.median(rates))
        return {"framework": "genjax", "config": name, "batch_size": config.batch_size,
                "n_critic": config.get("n_critic", 1), "parallel": driver,
                "devices": d.num_devices, "steps_per_call": steps_per_call,
                "layers": "fast" if fast_layers else "stock",
                "cpu_dots": cpu_dots if jax.default_backend() == "cpu" else None,
                "cpu_dots_used": None if jax.default_backend() != "cpu" else _dots_used(opts),
                "input": _INPUTS[source],
                "examples_per_sec": round(rate, 1), "min": round(min(rates), 1),
                "max": round(max(rates), 1), "ms_per_step": round(1000 * n / rate, 2),
                "compute_dtype": compute_dtype, "step_options": step_options or {},
                "compile_s": round(compile_s, 2), "first_call_s": round(first, 2),
                "gflop_per_step": None if flops is None else round(flops / 1e9, 3),
                "gflops": None if flops is None else round(flops / 1e9 * rate / n, 1),
                "peak_memory_mb": _peak_memory_mb(), **extra}

    return Prepared(d.step, state, lambda: fixed, n * steps_per_call, row, feed)


def measure(name: str, batch_size: int | None, **options) -> dict:
    """One genjax row: `prepare`, then ``--windows`` windows of the fixed batch; a
    ``source`` row takes pipeline-fed and fixed-batch windows in turn, their ratio free
    of the machine's drift."""
    import numpy as np

    p = prepare(name, batch_size, **options)
    if p.feed is None:
        return p.row([p.window() for _ in range(_WINDOWS.value)])
    both, p.state = paired_windows(p.step, p.state, {"pipeline": p.feed, "fixed": p.batches},
                                   p.examples_per_call, _SECONDS.value, _WINDOWS.value)
    return p.row(both["pipeline"], paired_in_memory=round(float(np.median(both["fixed"])), 1),
                 paired_ratio=round(float(np.median(
                     [a / b for a, b in zip(both["pipeline"], both["fixed"])])), 3))


def measure_in_turn(name: str, batch_size: int | None, variants: list[dict]) -> list[dict]:
    """One genjax row per entry of ``variants`` (`prepare`'s options, e.g. each driver),
    their windows taken in turn (A B C A B C ...), so that the machine's drift hits every
    variant alike and their ratios compare like with like."""
    prepared = [prepare(name, batch_size, **v) for v in variants]
    rates: list[list[float]] = [[] for _ in prepared]
    for _ in range(_WINDOWS.value):
        for p, r in zip(prepared, rates):
            r.append(p.window())
    return [p.row(r, timed_in_turn=len(prepared)) for p, r in zip(prepared, rates)]


def markdown_tables(results: list[dict]) -> str:
    """The docs/benchmarks.md tables: one row per config and batch (default rows: fast layers, no
    parallelism, batch in memory) with the fastest peer beside it, every peer row, then
    the stock-layer, bfloat16, other-update and
    pipeline rows against their default row."""
    def default(r):
        return (r["framework"] == "genjax" and r["layers"] == "fast" and r["parallel"] == "none"
                and r["input"] == "in memory" and r.get("compute_dtype", "float32") == "float32"
                and not r.get("step_options"))

    def best_peer(config, batch):
        peers = [x for x in results if x["framework"] != "genjax" and same(x, config, batch)]
        return max(peers, key=lambda x: x["examples_per_sec"], default=None)

    def same(r, config, batch):
        return r["config"] == config and r["batch_size"] == batch

    def rate(r):
        return f"{r['examples_per_sec']:,.0f} ({r['min']:,.0f}–{r['max']:,.0f})"

    lines = ["| config | batch | genjax examples/s (min–max) | ms/step | compile s | GFLOP/s "
             "(% of peak) | peak MB | best peer | peer examples/s (min–max) | "
             "peer GFLOP/s | genjax / best peer |", "|---" * 11 + "|"]
    for r in filter(default, results):
        t = best_peer(r["config"], r["batch_size"])
        batch = f"{r['batch_size']}" + (f" × {r['n_critic']}" if r["n_critic"] > 1 else "")
        lines.append(
            f"| `{r['config']}` | {batch} | {rate(r)} | {r['ms_per_step']:,.1f} | "
            f"{r.get('compile_s', r['first_call_s']):.1f} | "
            f"{r['gflops']:.0f} ({r['pct_of_peak']:.0f} %) | "
            f"{r['peak_memory_mb']:,.0f} | " + ("— | — | — | — |" if t is None else
            f"{t['framework']} | {rate(t)} | {t.get('gflops') or 0:.0f} | "
            f"{r['examples_per_sec'] / t['examples_per_sec']:.2f} |"))
    others = [r for r in results if r["framework"] != "genjax"]
    if others:
        lines += ["", "| config | batch | peer step | examples/s (min–max) |",
                  "|---" * 4 + "|"]
        lines += [f"| `{r['config']}` | {r['batch_size']} | {r['framework']} | {rate(r)} |"
                  for r in others]
    lines += ["", "| config | batch | variant | examples/s (min–max) | default row | ratio | "
              "genjax / best peer |", "|---" * 7 + "|"]
    for r in results:
        if r["framework"] != "genjax" or default(r):
            continue
        base = next((x for x in results if default(x) and same(x, r["config"], r["batch_size"])),
                    None)
        variant = "stock Flax layers" if r["layers"] == "stock" else r["input"]
        if r.get("compute_dtype", "float32") != "float32":
            variant = f"{r['compute_dtype']} compute"
        if r["parallel"] != "none":
            variant = f"{r['parallel']} ({r['devices']} devices)"
        if r.get("step_options"):
            variant = ", ".join(f"{k}={v}" for k, v in sorted(r["step_options"].items()))
        t = best_peer(r["config"], r["batch_size"])
        ratio = lambda other: f"{r['examples_per_sec'] / other['examples_per_sec']:.2f}"
        if "paired_ratio" in r:  # pipeline rows: against the fixed batch timed in turn with them
            versus = f"{r['paired_in_memory']:,.0f} (paired) | {r['paired_ratio']:.2f} |"
        else:
            versus = ("— | — |" if base is None
                      else f"{base['examples_per_sec']:,.0f} | {ratio(base)} |")
        lines.append(f"| `{r['config']}` | {r['batch_size']} | {variant} | {rate(r)} | {versus}"
                     + (" — |" if t is None else f" {ratio(t)} |"))
    return "\n".join(lines)


def _rows(spec: list[str]) -> list[tuple[str, int]]:
    return [(s.split("@")[0], int(s.split("@")[1])) for s in spec if s]


def main(_):
    import jax

    if _TABLE.value:
        with open(_TABLE.value) as f:
            results = json.load(f)["results"]
        print(markdown_tables(results))
        print(like_for_like_table(results))
        return
    logging.set_verbosity(logging.WARNING)
    jax.monitoring.register_event_duration_secs_listener(_count_compile)
    torch_ref, keras_ref = _torch(), _keras()
    peak = matmul_peak_gflops()
    print("matmul peak GFLOP/s:", peak, flush=True)
    results = []

    def record(row: dict) -> None:
        row["pct_of_peak"] = None if row.get("gflops") is None else round(
            100 * row["gflops"] / max(peak.values()), 1)
        print(json.dumps(row), flush=True)
        results.append(row)

    sizes = [int(b) for b in _BATCH_SIZES.value] or [None]
    for name in _CONFIGS.value:
        for batch_size in sizes:
            variants = [{"driver": driver, "steps_per_call": k, "cpu_dots": dots}
                        for driver in _PARALLEL.value for k in map(int, _STEPS_PER_CALL.value)
                        for dots in _CPU_DOTS.value]
            for row in measure_in_turn(name, batch_size, variants):
                record(row)
            config = _config(name, batch_size)
            for peer, kwargs in peer_rows(name, config):
                row = peer.measure(name, config, _SECONDS.value, _WINDOWS.value, **kwargs)
                ours = [r for r in results if r["config"] == name and r["framework"] == "genjax"
                        and r["batch_size"] == row["batch_size"] and r["layers"] == "fast"]
                best = max(ours, key=lambda r: r["examples_per_sec"])
                row["genjax_over_peer"] = round(best["examples_per_sec"] / row["examples_per_sec"], 2)
                if best["gflop_per_step"] is not None:  # same models: the same FLOPs per step
                    row["gflops"] = round(best["gflop_per_step"] * row["examples_per_sec"]
                                          / (row["batch_size"] * row["n_critic"]), 1)
                record(row)
    for name, batch_size in _rows(_STOCK.value):
        record(measure(name, batch_size, fast_layers=False))
    for name, batch_size in _rows(_BF16.value):
        record(measure(name, batch_size, compute_dtype="bfloat16"))
    for name, batch_size in _rows(_UPDATES.value):
        if not any(r["config"] == name and r["batch_size"] == batch_size and
                   r["framework"] == "genjax" and r["layers"] == "fast" for r in results):
            record(measure(name, batch_size))  # the default (alternating) row
        config = _config(name, batch_size)
        timed = peer_rows(name, config) if name in _CONFIGS.value and batch_size in sizes else []
        for peer, kwargs in like_for_like_rows(name, batch_size):
            if (peer, kwargs) not in timed:  # not timed above already
                record(measure(name, batch_size, step_options=kwargs) if peer is None else
                       peer.measure(name, config, _SECONDS.value, _WINDOWS.value, **kwargs))
    for name, batch_size in _rows(_PIPELINE.value):
        if not any(r["config"] == name and r["batch_size"] == batch_size and
                   r["framework"] == "genjax" and r["layers"] == "fast" for r in results):
            record(measure(name, batch_size))  # the in-memory figure to compare with
        for source in ("tfds", "memory"):
            record(measure(name, batch_size, source=source))
    out = _OUT.value or os.path.join(os.path.dirname(os.path.abspath(__file__)), "results",
                                     f"{_device_name()}.json")
    with open(out, "w") as f:
        json.dump({"device": _device_name(), "cpu_count": os.cpu_count(), "cpu": machine.cpu(),
                   "jax": jax.__version__,
                   "torch": None if torch_ref is None else torch_ref.version(),
                   "keras": None if keras_ref is None else keras_ref.version(),
                   "matmul_peak_gflops": peak, "command": " ".join(sys.argv),
                   "results": results}, f, indent=2)
    print(markdown_tables(results))
    print(like_for_like_table(results))
    print("wrote", out)


if __name__ == "__main__":
    app.run(main)
