"""Benchmarks that must not rot: the accelerator suite (benchmarks/accelerator.py) runs
where a GPU machine would run it (without TensorFlow or tfds, ml_collections imported from
a wheel file, PyTorch beside it); the population benchmarks at a tiny size."""

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import zipfile

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Runs the suite as a GPU image would: TensorFlow and tfds absent, and ml_collections
# findable only inside a wheel on sys.path (the installed copy hidden).
PRELUDE = """
import importlib.abc, importlib.machinery, runpy, sys
for name in ("tensorflow", "tensorflow_datasets"):
    sys.modules[name] = None
class OnlyFromWheels(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name != "ml_collections":
            return None
        spec = importlib.machinery.PathFinder.find_spec(
            name, [p for p in sys.path if p.endswith(".whl")])
        if spec is None:
            raise ModuleNotFoundError(f"No module named {name!r}")
        return spec
sys.meta_path.insert(0, OnlyFromWheels())
sys.argv = ["accelerator"] + sys.argv[1:]
runpy.run_module("benchmarks.accelerator", run_name="__main__")
"""


def _wheel_of_installed_ml_collections(folder) -> str:
    """A wheel-shaped zip of the installed ml_collections package (what --prepare_wheels
    downloads, minus its metadata, which imports do not read)."""
    import ml_collections

    package = os.path.dirname(ml_collections.__file__)
    path = os.path.join(folder, "ml_collections-1.1.0-py3-none-any.whl")
    with zipfile.ZipFile(path, "w") as z:
        for base, _, files in os.walk(package):
            for f in files:
                if f.endswith(".py"):
                    full = os.path.join(base, f)
                    z.write(full, os.path.relpath(full, os.path.dirname(package)))
    return path


def _run_suite(tmp_path, *args: str) -> tuple[dict, str]:
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    wheel = _wheel_of_installed_ml_collections(str(wheels))
    out = tmp_path / "accelerator.json"
    proc = subprocess.run([sys.executable, "-c", PRELUDE, "--quick", f"--wheels={wheels}",
                           f"--out={out}", *args], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": ROOT}, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["wheels_used"] == [os.path.basename(wheel)]
    return result, proc.stdout


def _check_rows(result: dict, configs: list[str]) -> None:
    rows = result["rows"]
    assert result["skipped"] == [] and result["device"] and result["jax"]
    assert all(r["examples_per_sec"] > 0 for r in rows)
    ours = {(r["config"], r["dtype"]) for r in rows if r["framework"] == "genjax"}
    assert {(c, "float32") for c in configs} | {(configs[0], "bfloat16")} == ours
    if importlib.util.find_spec("torch") is None:
        return
    from benchmarks import torch_reference

    eager = {r["config"] for r in rows if "eager" in r["framework"]}
    assert eager == {c for c in configs if torch_reference.supports(c)}
    if shutil.which("g++") or shutil.which("c++"):  # torch.compile's CPU backend builds C++
        assert [r["config"] for r in rows if "torch.compile" in r["framework"]] == configs[:1]


def test_accelerator_suite_runs_without_tensorflow_from_carried_wheels(tmp_path):
    result, stdout = _run_suite(tmp_path, "--configs=vae_mnist,rbm_pcd_mnist")
    _check_rows(result, ["vae_mnist", "rbm_pcd_mnist"])
    assert "| `vae_mnist` | 8 |" in stdout and "| `rbm_pcd_mnist` | 8 |" in stdout


@pytest.mark.slow(seconds=60)
def test_accelerator_suite_covers_every_family(tmp_path):
    from benchmarks import accelerator

    result, _ = _run_suite(tmp_path)
    _check_rows(result, list(accelerator.CONFIGS))
    from genjax.cli.train import FAMILIES

    defaults = {config for family, (config, _) in FAMILIES.items() if family != "classifier"}
    assert defaults <= set(accelerator.CONFIGS)


@pytest.mark.slow(seconds=25)
def test_population_benchmark_times_every_strategy_and_the_peers(tmp_path):
    """benchmarks/population.py end to end at a tiny size: every strategy and, where PyTorch
    is installed, its sequential and per-core rows, one timing process per core."""
    from genjax import workers

    out = tmp_path / "population.json"
    proc = subprocess.run([sys.executable, "-m", "benchmarks.population", "--configs=vae_mnist",
                           "--k=2", "--batch=8", "--seconds=0.2", "--windows=1", f"--out={out}"],
                          cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONPATH": ROOT})
    assert proc.returncode == 0, proc.stderr[-3000:]
    (row,) = json.loads(out.read_text())["results"]
    assert row["default"] == "workers" and row["k"] == 2
    for key in ("sequential", "vmap", "map", "workers"):
        assert row[key]["examples_per_sec"] > 0, key
    assert row["workers"]["processes"] == min(2, len(workers.cores()))
    assert row["vmap"]["state_mb_per_member"] > 0
    if importlib.util.find_spec("torch") is not None:
        assert row["torch_sequential"]["examples_per_sec"] > 0
        assert row["torch_per_core"]["processes"] == min(2, len(workers.cores()))
    assert "| `vae_mnist` |" in proc.stdout


@pytest.mark.slow(seconds=90)
def test_seed_populations_times_a_population_against_its_seeds_run_apart(data_dir, tmp_path):
    """benchmarks/seed_populations.py end to end on a tiny VAE: a 2-seed population (one
    worker per core) and the two seeds' own runs, each timed; the population's spread of
    every final metric is the separate runs' (a worker's member is its run alone, to the
    float32 roundoff of one thread against several)."""
    out = tmp_path / "seeds.json"
    proc = subprocess.run([sys.executable, "-m", "benchmarks.seed_populations",
                           "--configs=vae_mnist:test", "--seeds=2", f"--set=data_dir={data_dir}",
                           f"--workdir={tmp_path / 'runs'}", f"--out={out}"],
                          cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONPATH": ROOT})
    assert proc.returncode == 0, proc.stderr[-3000:]
    row = json.loads(out.read_text())["configs"]["vae_mnist:test"]
    assert row["population"]["strategy"] == "workers" and row["speedup"] > 0
    assert len(row["sequential"]["each_wall_s"]) == 2
    together, apart = row["population"]["metrics"], row["sequential"]["metrics"]
    assert set(together) == set(apart) and "test/neg_elbo" in together, together
    for name, spread in together.items():
        if not name.startswith("time/"):
            np.testing.assert_allclose([spread["min"], spread["max"]],
                                       [apart[name]["min"], apart[name]["max"]], rtol=1e-3,
                                       err_msg=name)
