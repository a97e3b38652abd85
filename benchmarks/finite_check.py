"""What the loop's finiteness check of the whole state costs, measured on the loop itself.

Every log step (and so before every checkpoint) the loop checks every floating leaf of
the state (parameters, optimizer moments, BatchNorm statistics, EMA weights, spectral
vectors) with one fused reduction (`genjax.steps.all_finite`). This runs each config
with a checkpoint and a log row at every step, the worst case, with the check and with
it replaced by a constant, alternating, and reports the seconds per step between the
first and the last logged step (checkpoint writes included, compile excluded) and the
time spent inside the check.

  python -m benchmarks.finite_check                       # dcgan_mnist, ddpm_mnist
  python -m benchmarks.finite_check --configs=sngan_mnist --steps=30 --repeats=3
"""

from __future__ import annotations

import importlib
import json
import os
import statistics
import tempfile
import time
from unittest import mock

from absl import app, flags

from benchmarks import machine

_CONFIGS = flags.DEFINE_list("configs", ["dcgan_mnist", "ddpm_mnist"], "Configs to run.")
_STEPS = flags.DEFINE_integer("steps", 40, "Steps per run (a checkpoint and a log every step).")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Runs with and without the check, alternating.")
_OUT = flags.DEFINE_string("out", os.path.join(os.path.dirname(__file__), "results",
                                               "finite_check.json"), "Result file.")


def _run(name: str, steps: int, checked: bool) -> dict:
    """One run of ``name`` (its full-size config) for ``steps`` steps, checkpointing and
    logging every step, without the final evaluation; the per-step time and the time
    spent in the state check."""
    from genjax import loop

    c = importlib.import_module(f"genjax.configs.{name}").get_config()
    c.num_steps, c.checkpoint_every, c.log_every, c.sample_every = steps, 1, 1, 10 * steps
    c.keep_checkpoints, c.eval_every = 2, 0
    spent, real = [], loop._all_finite

    def timed(state):
        start = time.perf_counter()
        ok = bool(real(state))
        spent.append(time.perf_counter() - start)
        return ok

    check = timed if checked else (lambda state: True)
    with tempfile.TemporaryDirectory() as workdir, mock.patch.object(loop, "_finish"), \
            mock.patch.object(loop, "_all_finite", check):
        loop.train_and_evaluate(c, workdir)
        rows = [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]
    minutes = [r["train/minutes"] for r in rows if "train/minutes" in r]
    per_step = (minutes[-1] - minutes[0]) * 60 / (len(minutes) - 1)
    return {"seconds_per_step": per_step,
            "check_seconds": statistics.median(spent[1:]) if len(spent) > 1 else None}


def measure(name: str, steps: int, repeats: int) -> dict:
    """Alternating runs with and without the check; medians and every run."""
    runs = {"checked": [], "unchecked": []}
    for _ in range(repeats):
        for mode in runs:
            runs[mode].append(_run(name, steps, mode == "checked"))
    med = {m: statistics.median(r["seconds_per_step"] for r in rs) for m, rs in runs.items()}
    check = statistics.median(r["check_seconds"] for r in runs["checked"])
    return {"config": name, "steps": steps, "runs": runs,
            "median_seconds_per_step": med, "median_check_seconds": check,
            "check_share_of_step": check / med["checked"],
            "slowdown": med["checked"] / med["unchecked"] - 1}


def main(argv):
    del argv
    results = {"machine": machine.cpu(), "command": "python -m benchmarks.finite_check "
               f"--configs={','.join(_CONFIGS.value)} --steps={_STEPS.value} "
               f"--repeats={_REPEATS.value}", "rows": []}
    for name in _CONFIGS.value:
        row = measure(name, _STEPS.value, _REPEATS.value)
        results["rows"].append(row)
        print(f"{name}: checked {row['median_seconds_per_step']['checked'] * 1e3:.1f} ms/step, "
              f"unchecked {row['median_seconds_per_step']['unchecked'] * 1e3:.1f} ms/step, "
              f"check {row['median_check_seconds'] * 1e3:.2f} ms "
              f"({100 * row['check_share_of_step']:.1f} % of a step)", flush=True)
    with open(_OUT.value, "w") as f:
        json.dump(results, f, indent=2)


if __name__ == "__main__":
    app.run(main)
