"""Samples per CPU-minute: GAN candidates trained for a wall-clock budget, scored as they go.

  python -m benchmarks.fast_gan --candidates=conv32_ema,conv32_ema_cond,mlp_ema --minutes=5
  python -m benchmarks.fast_gan --candidates=mlp_ema_r1 --minutes=15 --seeds=0,1,2   # 50 min
  python -m benchmarks.fast_gan --copies --candidates=mlp_ema_r1 --minutes=15 --seeds=0,1,2
  python -m benchmarks.fast_gan --candidates=dcgan_alternating,dcgan_shared,dcgan_simultaneous,\
      mlp_ema_r1_alternating,mlp_ema_r1,mlp_ema_r1_simultaneous --minutes=15 --seeds=0,1,2 \
      --out=benchmarks/results/gan_updates.json   # each GAN update's quality, 4.5 hours

Each candidate is a shipped config plus overrides. A run trains with
``config.train_minutes`` (compile and checkpoints included, evaluations excluded) and
scores 1,000 samples with the mnist5k domain classifier every ``eval_every`` steps, so one
run gives the FID against training minutes: the figure "within N minutes" is the last
evaluation at or before N minutes (the final one, at the budget, is taken after the step
that crossed it). Results (every curve, and per budget the median over seeds) go to
``--out`` with the CPU named; the workdirs (samples, checkpoints) stay under ``--workdir``.
Run one benchmark at a time: the budget is wall-clock.
"""

from __future__ import annotations

import importlib
import json
import os
import statistics

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags, logging  # noqa: E402

from benchmarks import machine  # noqa: E402

# name -> (config module in genjax/configs, overrides)
CANDIDATES = {
    "conv32_ema": ("dcgan_mnist", {"base_width": 32, "eval_every": 200, "ema_decay": 0.995,
                                   "gan_update": "shared"}),
    "conv32_ema_cond": ("cdcgan_mnist", {"base_width": 32, "eval_every": 200,
                                         "ema_decay": 0.995, "gan_update": "shared"}),
    "mlp_ema": ("fast_gan_mnist", {"eval_every": 2000, "r1_weight": 0.0}),
    "mlp_ema_r1": ("fast_gan_mnist", {"eval_every": 2000}),  # the named config
    # Each GAN update (`gan_update`) at the same budget, the textbook DCGAN and the MLP GAN
    # of fast_gan_mnist (whose own update is "shared": mlp_ema_r1).
    **{f"dcgan_{u}": ("dcgan_mnist", {"eval_every": 200, "gan_update": u})
       for u in ("alternating", "shared", "simultaneous")},
    **{f"mlp_ema_r1_{u}": ("fast_gan_mnist", {"eval_every": 2000, "gan_update": u})
       for u in ("alternating", "simultaneous")},
    "wgan_gp": ("wgan_gp_mnist", {"eval_every": 100}),  # textbooks, for their default budgets
    "wgan": ("wgan_mnist", {"eval_every": 100}),
}
KEYS = ("fid", "min_class_share", "classes_covered", "precision", "recall", "is")
RESULTS = os.path.join(os.path.dirname(__file__), "results")

_CANDIDATES = flags.DEFINE_list("candidates", list(CANDIDATES), "Candidates to train.")
_SEEDS = flags.DEFINE_list("seeds", ["0"], "Seeds per candidate.")
_MINUTES = flags.DEFINE_float("minutes", 5.0, "Training minutes per run.")
_REPORT = flags.DEFINE_list("report_minutes", ["5", "15"], "Budgets to read off the curves.")
_WORKDIR = flags.DEFINE_string("workdir", "runs/fast_gan", "Parent of the runs' workdirs.")
_COPIES = flags.DEFINE_bool("copies", False, "Only run the memorisation check (`copies_check`) "
                             "on the finished runs of --candidates and --seeds.")
_OUT = flags.DEFINE_string("out", os.path.join(RESULTS, "fast_gan.json"), "Result file "
                           "(runs already in it are kept unless rerun).")


def candidate_config(name: str, seed: int, minutes: float):
    """The candidate's config: its shipped config, its overrides, the seed and the budget
    (``num_steps`` large enough that the clock, not the step count, ends the run)."""
    module, overrides = CANDIDATES[name]
    c = importlib.import_module(f"genjax.configs.{module}").get_config()
    c.update(overrides)
    c.seed, c.train_minutes = seed, minutes
    c.num_steps = 10**6 * c.eval_every
    c.log_every = c.eval_every // 4
    c.sample_every = c.checkpoint_every = c.eval_every * 5
    return c


def curve(metrics_path: str) -> list[dict]:
    """[{"step", "minutes", <KEYS>}] for every evaluation in a run's ``metrics.jsonl``,
    at the training minutes of the log row of its step."""
    minutes, points = {}, []
    for row in map(json.loads, open(metrics_path)):
        if "train/minutes" in row:
            minutes[row["step"]] = row["train/minutes"]
        if "test/domain_fid" in row:
            points.append({"step": row["step"], "minutes": round(minutes[row["step"]], 3),
                           **{k: row[f"test/domain_{k}"] for k in KEYS}})
    return points


def at_budget(points: list[dict], minutes: float) -> dict | None:
    """The last evaluation at or before ``minutes`` (the final one counts when the run's
    budget is ``minutes``: it is taken just after the clock crossed it)."""
    inside = [p for p in points if p["minutes"] <= minutes * 1.01 + 0.05]
    return inside[-1] if inside else None


def summarise(runs: dict, budgets: list[float]) -> dict:
    """Per candidate and budget: the median FID over seeds, its range, and whether every
    class held ≥ 5 % of the samples in every seed (each seed once: its longest run)."""
    longest = {}  # (candidate, seed) -> its longest run (a shorter one is its prefix)
    for r in runs.values():
        key = (r["candidate"], r["seed"])
        if key not in longest or r["minutes"] > longest[key]["minutes"]:
            longest[key] = r
    out = {}
    for name in sorted({c for c, _ in longest}):
        for b in budgets:
            got = [at_budget(r["curve"], b) for (c, _), r in sorted(longest.items())
                   if c == name and r["minutes"] >= b]
            got = [g for g in got if g]
            if got:
                fids = [g["fid"] for g in got]
                out[f"{name}@{b:g}min"] = {
                    "seeds": len(got), "median_fid": statistics.median(fids),
                    "min_fid": min(fids), "max_fid": max(fids),
                    "every_class_5pct": all(g["min_class_share"] >= 0.05 for g in got),
                    "steps": [g["step"] for g in got]}
    return out


def _nearest(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Euclidean distance from each row of ``a`` to its nearest row of ``b``."""
    from genjax.metrics import scores
    return np.sqrt(scores._pairwise_sq_distances(a, b).min(1))


def copies_check(workdir: str, num: int = 1000) -> dict:
    """Does the run copy its training digits? The pixel distance from each of ``num``
    samples (the evaluation's noise) to its nearest training digit, against the same
    distance for the test digits (which the generator never saw): samples much nearer
    than test digits would be memorised ones."""
    from genjax import data as gdata
    from genjax import loop, record, rng
    from genjax.checkpoint import Checkpointer
    from genjax.tasks.common import collect_images

    config = record.run_config(workdir)
    run = loop.setup(config)
    state = Checkpointer(os.path.join(workdir, "checkpoints"), read_only=True).restore(
        run.init_state())
    fake = np.concatenate(list(run.task.sample(state, rng.stream(config.seed, "eval_samples"),
                                               num)))[:num].reshape(num, -1)
    spec = run.eval_spec
    real = lambda split: collect_images(gdata.eval_iterator(spec, split, global_batch_size=250),
                                        gdata.num_examples(spec, split), spec.preprocess)
    train, test = (real(s).reshape(-1, fake.shape[1]) for s in ("train", "test"))
    to_train, test_to_train = _nearest(fake, train), _nearest(test, train)
    return {"median_sample_to_train": float(np.median(to_train)),
            "median_test_to_train": float(np.median(test_to_train)),
            "share_nearer_than_test_p5": float(np.mean(to_train < np.percentile(test_to_train, 5))),
            "step": int(state.step)}


def main(argv):
    del argv
    from genjax import loop
    logging.set_verbosity(logging.WARNING)  # orbax logs every save at INFO
    results = json.load(open(_OUT.value)) if os.path.exists(_OUT.value) else {"runs": {}}
    for name in _CANDIDATES.value:
        if name not in CANDIDATES:
            raise app.UsageError(f"Unknown candidate {name!r}; valid: {', '.join(CANDIDATES)}.")
        for seed in map(int, _SEEDS.value):
            key = f"{name}_s{seed}_{_MINUTES.value:g}min"
            workdir = os.path.join(_WORKDIR.value, key)
            if _COPIES.value:
                if key not in results["runs"]:
                    raise app.UsageError(f"No finished run {key} in {_OUT.value} to check.")
                results["runs"][key]["copies"] = copies_check(workdir)
                print(key, results["runs"][key]["copies"], flush=True)
                with open(_OUT.value, "w") as f:
                    json.dump(results, f, indent=1)
                continue
            if os.path.exists(workdir):  # a second budget on top of the first is another run
                raise app.UsageError(f"{workdir} exists: remove it or choose another --workdir.")
            config = candidate_config(name, seed, _MINUTES.value)
            loop.train_and_evaluate(config, workdir)
            results["runs"][key] = {"candidate": name, "seed": seed, "minutes": _MINUTES.value,
                                    "config": CANDIDATES[name][0],
                                    "overrides": CANDIDATES[name][1], "workdir": workdir,
                                    "curve": curve(os.path.join(workdir, "metrics.jsonl"))}
            results.update(cpu=machine.cpu(), summary=summarise(
                results["runs"], [float(b) for b in _REPORT.value]))
            with open(_OUT.value, "w") as f:
                json.dump(results, f, indent=1)
            print(json.dumps(results["summary"], indent=1), flush=True)


if __name__ == "__main__":
    app.run(main)
