"""The "median of 3 seeds" rows as one population run each, against three runs one after
another: wall time and the seeds' spread of every final metric, both ways, on this machine.

  python -m benchmarks.seed_populations --configs=rbm_pcd_mnist,maf_mnist
  python -m benchmarks.seed_populations     # the six headline configs (hours on 2 cores)
  python -m benchmarks.seed_populations --configs=vae_mnist:test --seeds=2 --set=data_dir=/tmp/d

For each config, ``python -m experiments.<task> --config=<name>
--config.population.seeds=<--seeds>`` (the population's default strategy on this backend:
one single-threaded worker per core on a CPU), then the same config with
``--config.seed=0``, 1, ... as separate runs, each process timed from launch to exit
(set-up, compilation, training and the final evaluation all count). Results are merged
into ``--out`` by config, with the CPU named; the workdirs stay under ``--workdir`` and are
never reused (a finished run would return at once). Run one benchmark at a time.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags  # noqa: E402

from benchmarks import machine  # noqa: E402

HEADLINE = ["fast_gan_mnist", "ddpm_mnist", "realnvp_mnist", "maf_mnist", "rbm_pcd_mnist",
            "rbm_centered_mnist"]
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_CONFIGS = flags.DEFINE_list("configs", HEADLINE, "Configs (genjax/configs) to run.")
_SEEDS = flags.DEFINE_integer("seeds", 3, "Seeds: the population's members, and the runs.")
_SEQUENTIAL = flags.DEFINE_bool("sequential", True, "Also run the seeds one after another.")
_SET = flags.DEFINE_list("set", [], "More config fields for every run, as field=value.")
_WORKDIR = flags.DEFINE_string("workdir", "runs/seed_populations", "Parent of the workdirs.")
_OUT = flags.DEFINE_string("out", os.path.join(ROOT, "benchmarks", "results",
                                               "seed_populations.json"), "Result file.")


def _config(name: str):
    """The config ``name`` (``name:variant``) of genjax/configs."""
    module, _, variant = name.partition(":")
    return importlib.import_module(f"genjax.configs.{module}").get_config(variant)


def timed_run(name: str, workdir: str, *flags_: str) -> float:
    """Seconds for the experiment of config ``name`` in a fresh ``workdir``, its output in
    ``workdir``.log."""
    if os.path.exists(workdir):
        raise app.UsageError(f"{workdir} exists: remove it or choose another --workdir.")
    task = _config(name).task
    os.makedirs(os.path.dirname(workdir), exist_ok=True)
    start = time.perf_counter()
    with open(workdir + ".log", "w") as log:
        code = subprocess.call([sys.executable, "-m", f"experiments.{task}", f"--config={name}",
                                f"--workdir={workdir}", *flags_,
                                *(f"--config.{kv}" for kv in _SET.value)], cwd=ROOT, stdout=log,
                               stderr=subprocess.STDOUT)
    if code:
        raise RuntimeError(f"{name} in {workdir} ended with status {code}; see {workdir}.log")
    return round(time.perf_counter() - start, 1)


def measure(name: str) -> dict:
    """One config's population run and (``--sequential``) its seeds' separate runs."""
    from genjax import population, record, workers

    parent = os.path.join(_WORKDIR.value, name.replace(":", "_"))
    pop_dir = os.path.join(parent, "population")
    row = {"config": name, "seeds": _SEEDS.value, "population": {
        "wall_s": timed_run(name, pop_dir, f"--config.population.seeds={_SEEDS.value}")}}
    summary = json.load(open(os.path.join(pop_dir, population.SUMMARY)))
    row["population"].update(
        strategy="workers" if workers.has_members(pop_dir) else
        record.run_config(pop_dir).population.strategy,
        metrics=summary["settings"][0]["metrics"])
    if _SEQUENTIAL.value:
        config = _config(name)
        config.population.seeds = _SEEDS.value
        members = population.roster(config)
        dirs = [os.path.join(parent, f"seed{m.seed}") for m in members]
        walls = [timed_run(name, d, f"--config.seed={m.seed}") for m, d in zip(members, dirs)]
        finals = [record.final_metrics(d) for d in dirs]
        alone = population.summary(members, finals, [population.ALIVE] * len(members))
        row["sequential"] = {"wall_s": round(sum(walls), 1), "each_wall_s": walls,
                             "metrics": alone["settings"][0]["metrics"]}
        row["speedup"] = round(row["sequential"]["wall_s"] / row["population"]["wall_s"], 2)
    return row


def main(argv) -> None:
    del argv
    results = json.load(open(_OUT.value)) if os.path.exists(_OUT.value) else {"configs": {}}
    for name in _CONFIGS.value:
        row = measure(name)
        results["configs"][name] = {**row, "cpu": machine.cpu()}
        with open(_OUT.value, "w") as f:
            json.dump(results, f, indent=1)
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    app.run(main)
