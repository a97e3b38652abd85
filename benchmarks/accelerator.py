"""Every family's train step on whatever accelerator JAX finds, beside PyTorch, in one short run.

For each family's default config (and the conv GAN) at batch 256: genjax's step in
float32 and in bfloat16 (`genjax.precision`), then PyTorch's step of the same networks
(`benchmarks.torch_reference`, the GAN with genjax's alternating update) eager and under
``torch.compile`` (default mode), all in float32 on the same device, each timed as
`benchmarks.throughput` times its rows. The rows run in order of importance (genjax
float32, PyTorch eager, genjax bfloat16, ``torch.compile``) and a row that would start
after ``--budget_s`` is listed as skipped, so the whole run stays within 5 minutes of
device time. Writes JSON naming the device and prints the tables, with genjax / the best
PyTorch figure per row.

A GPU machine may have its own JAX and PyTorch but no TensorFlow, no ml_collections and
no package registry. genjax's configs, tasks and drivers need no TensorFlow; the pure-
Python packages it lacks travel as wheels in a folder carried with the tree, imported
straight from the wheel files (zipimport), so nothing is installed:

  here:  python -m benchmarks.accelerator --prepare_wheels          # writes .wheels/
  there: python3 -m benchmarks.accelerator --wheels=.wheels --out=$OUT/accelerator.json

``--quick`` runs the same code on CPU in seconds (the configs' ``:test`` sizes, batch 8,
float32 everywhere and bfloat16 for the VAE, ``torch.compile`` for the VAE only):
tests/test_benchmarks.py runs it, so the suite never rots.
"""

from __future__ import annotations

import argparse
import glob
import importlib
import importlib.util
import json
import os
import platform
import subprocess
import sys
import time
from typing import Any, Callable

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Pure-Python packages a GPU image may lack (module name, distribution name).
WHEELS = (("ml_collections", "ml_collections"),)
# One config per family (genjax-train's defaults), and the conv GAN.
CONFIGS = ("vae_mnist", "gan_mlp_mnist", "dcgan_mnist", "ddpm_mnist", "gated_pixelcnn_mnist",
           "realnvp_mnist", "rbm_pcd_mnist")
IMAGE_SHAPE = (28, 28, 1)


def prepare_wheels(folder: str) -> list[str]:
    """Download the `WHEELS` (the versions constraints.txt pins) into ``folder``."""
    pins = {}
    with open(os.path.join(ROOT, "constraints.txt")) as f:
        for line in f:
            name, _, version = line.strip().partition("==")
            pins[name.lower().replace("_", "-")] = version
    specs = [f"{dist}=={pins[dist.replace('_', '-')]}" for _, dist in WHEELS]
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                    "--dest", folder, *specs], check=True)
    return sorted(glob.glob(os.path.join(folder, "*.whl")))


def use_wheels(folder: str) -> list[str]:
    """Make each of `WHEELS` that is not installed importable from its wheel in ``folder``
    (a pure-Python wheel is a zip that Python imports from directly); returns the wheels
    used. A missing package with no wheel fails here, in one line."""
    used = []
    for module, dist in WHEELS:
        if _installed(module):
            continue
        found = sorted(glob.glob(os.path.join(folder, f"{dist}-*.whl")))
        if not found:
            raise SystemExit(f"error: {module} is not installed and {folder} has no {dist} "
                             f"wheel: run `python -m benchmarks.accelerator --prepare_wheels` "
                             f"where pip reaches the registry and carry the folder.")
        sys.path.insert(0, found[-1])
        used.append(os.path.basename(found[-1]))
    return used


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a finder that refuses it, or a module set to None
        return False


def _config(name: str, batch_size: int, quick: bool, **overrides):
    config = importlib.import_module(f"genjax.configs.{name}").get_config("test" if quick else "")
    config.batch_size = batch_size
    config.update(overrides)
    return config


def genjax_row(name: str, batch_size: int, dtype: str, quick: bool, seconds: float,
               windows: int) -> dict:
    """genjax's step of config ``name`` in ``dtype`` on one device: compile time, then
    examples/s on a fixed random batch already on the device."""
    import jax
    import numpy as np

    from benchmarks.peer_timing import timed_windows
    from genjax import parallel
    from genjax.tasks import TASKS

    config = _config(name, batch_size, quick, compute_dtype=dtype)
    task = TASKS[config.task](config, IMAGE_SHAPE)
    driver = parallel.make_driver("none", task.train_step, donate=True,
                                  cpu_dots=config.get("cpu_dots", "auto"))
    state = driver.place(jax.jit(task.init)(jax.random.key(0)))
    n = task.examples_per_step
    low = -1.0 if config.preprocess == "symmetric" else 0.0
    batch = jax.device_put({"image": np.random.default_rng(0).uniform(
        low, 1.0, (n, *IMAGE_SHAPE)).astype(np.float32), "label": np.zeros(n, np.int32)})
    start = time.perf_counter()
    driver.compile(state, batch)
    compile_s = time.perf_counter() - start
    first, rates, _ = timed_windows(driver.step, state, lambda: batch, n, seconds, windows)
    rate = float(np.median(rates))
    return {"framework": "genjax", "config": name, "batch_size": batch_size, "dtype": dtype,
            "examples_per_sec": round(rate, 1), "min": round(min(rates), 1),
            "max": round(max(rates), 1), "ms_per_step": round(1000 * n / rate, 3),
            "compile_s": round(compile_s, 2), "first_call_s": round(first, 2)}


def torch_row(name: str, batch_size: int, compiled: bool, quick: bool, seconds: float,
              windows: int) -> dict:
    """PyTorch's step of config ``name`` (`benchmarks.torch_reference`, float32) on the GPU
    when there is one, else on the CPU."""
    import torch

    from benchmarks import torch_reference
    from benchmarks.peer_timing import timed_row

    device = "cuda" if torch.cuda.is_available() else "cpu"
    config = _config(name, batch_size, quick)
    previous = torch.get_default_device()
    torch.set_default_device(device)  # the models, the batch and every draw in the step
    try:
        step, n = torch_reference.make_step(config, "alternating", compiled)
        sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
        row = timed_row(step, n, seconds, windows, sync=sync)
    finally:
        torch.set_default_device(previous)
    return {"framework": f"torch {torch.__version__} " + ("torch.compile" if compiled else "eager"),
            "config": name, "batch_size": batch_size, "dtype": "float32", "torch_device": device,
            **row}


def plan(configs: list[str], quick: bool, batch_size: int, torch_ok: bool
         ) -> list[tuple[str, Callable[[], dict]]]:
    """The rows in the order they run: (label, thunk); most important first."""
    args = dict(quick=quick, seconds=0.05 if quick else 1.0, windows=1 if quick else 3)
    peers = []
    if torch_ok:
        from benchmarks import torch_reference

        peers = [c for c in configs if torch_reference.supports(c)]
    rows = [(f"genjax {c} float32", lambda c=c: genjax_row(c, batch_size, "float32", **args))
            for c in configs]
    rows += [(f"torch eager {c}", lambda c=c: torch_row(c, batch_size, False, **args))
             for c in peers]
    rows += [(f"genjax {c} bfloat16", lambda c=c: genjax_row(c, batch_size, "bfloat16", **args))
             for c in (configs[:1] if quick else configs)]
    rows += [(f"torch.compile {c}", lambda c=c: torch_row(c, batch_size, True, **args))
             for c in (peers[:1] if quick else peers)]
    return rows


def run_rows(rows: list[tuple[str, Callable[[], dict]]], budget_s: float
             ) -> tuple[list[dict], list[str]]:
    """Run each row unless the budget is spent; (rows run, labels skipped)."""
    start, done, skipped = time.perf_counter(), [], []
    for label, thunk in rows:
        if time.perf_counter() - start > budget_s:
            skipped.append(label)
            continue
        row = thunk()
        print(json.dumps(row), flush=True)
        done.append(row)
    return done, skipped


def table(rows: list[dict]) -> str:
    """One line per config: genjax float32 and bfloat16, PyTorch eager and compiled, and
    genjax / the best PyTorch figure for each genjax dtype."""
    def rate(config: str, test: Callable[[dict], bool]) -> float | None:
        found = [r["examples_per_sec"] for r in rows if r["config"] == config and test(r)]
        return max(found) if found else None

    fmt = lambda x: "—" if x is None else f"{x:,.0f}"
    lines = ["| config | batch | genjax float32 | genjax bfloat16 | torch eager | torch.compile | "
             "float32 / best torch | bfloat16 / best torch |", "|---" * 8 + "|"]
    for config in dict.fromkeys(r["config"] for r in rows):
        ours = {d: rate(config, lambda r, d=d: r["framework"] == "genjax" and r["dtype"] == d)
                for d in ("float32", "bfloat16")}
        eager = rate(config, lambda r: "eager" in r["framework"])
        compiled = rate(config, lambda r: "torch.compile" in r["framework"])
        best = max((x for x in (eager, compiled) if x), default=None)
        ratio = lambda x: "—" if x is None or best is None else f"{x / best:.2f}"
        batch = next(r["batch_size"] for r in rows if r["config"] == config)
        lines.append(f"| `{config}` | {batch} | {fmt(ours['float32'])} | {fmt(ours['bfloat16'])} "
                     f"| {fmt(eager)} | {fmt(compiled)} | {ratio(ours['float32'])} | "
                     f"{ratio(ours['bfloat16'])} |")
    return "\n".join(lines)


def describe_machine() -> dict[str, Any]:
    """The accelerator and the software, as the JSON names them."""
    import jax

    from benchmarks import machine

    device = jax.devices()[0]
    out = {"device": device.device_kind, "platform": device.platform, "jax": jax.__version__,
           "python": platform.python_version(), "cpu": machine.cpu()}
    try:
        import torch
    except ImportError:
        return {**out, "torch": None}
    cuda = torch.cuda.is_available()
    return {**out, "torch": torch.__version__,
            "torch_device": torch.cuda.get_device_name(0) if cuda else "cpu"}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", help="JSON result file (default: results/accelerator_<device>.json)")
    parser.add_argument("--batch_size", type=int, default=256)
    parser.add_argument("--configs", default=",".join(CONFIGS), help="Comma-separated configs.")
    parser.add_argument("--budget_s", type=float, default=270.0,
                        help="No row starts after this many seconds.")
    parser.add_argument("--quick", action="store_true", help="Tiny configs on any device.")
    parser.add_argument("--torch", default=True, action=argparse.BooleanOptionalAction)
    parser.add_argument("--wheels", default=os.path.join(ROOT, ".wheels"),
                        help="Folder of pure-Python wheels for packages not installed.")
    parser.add_argument("--prepare_wheels", action="store_true",
                        help="Download the wheels into --wheels and stop.")
    args = parser.parse_args(argv)
    if args.prepare_wheels:
        print("\n".join(prepare_wheels(args.wheels)))
        return
    used = use_wheels(args.wheels)
    torch_ok = args.torch and _installed("torch")
    start = time.perf_counter()
    configs = [c for c in args.configs.split(",") if c]
    rows, skipped = run_rows(plan(configs, args.quick, 8 if args.quick else args.batch_size,
                                  torch_ok), args.budget_s)
    result = {**describe_machine(), "command": " ".join(sys.argv), "wheels_used": used,
              "budget_s": args.budget_s, "elapsed_s": round(time.perf_counter() - start, 1),
              "skipped": skipped, "rows": rows}
    out = args.out or os.path.join(ROOT, "benchmarks", "results", "accelerator_" + "".join(
        ch if ch.isalnum() else "_" for ch in result["device"].lower()) + ".json")
    with open(out, "w") as f:
        json.dump(result, f, indent=2)
    print(table(rows))
    if skipped:
        print(f"skipped (over the {args.budget_s:.0f} s budget): {', '.join(skipped)}")
    print("wrote", out)


if __name__ == "__main__":
    main()
