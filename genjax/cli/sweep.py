"""``genjax-sweep``: a hyperparameter search of any config, as an Optuna study.

  genjax-sweep --config=fast_gan_mnist --study=gan_lr --trials=40 \\
      --space='g_learning_rate=loguniform(1e-5, 1e-3); d_learning_rate=loguniform(1e-5, 1e-3); b1=uniform(0, 0.9)' \\
      --config.num_steps=4000
  genjax-sweep --config=fast_gan_mnist:test --study=grid --sampler=grid --seeds=2 \\
      --space='g_learning_rate=choice(1e-4, 2e-4, 4e-4); b1=choice(0.0, 0.5)'
  genjax-sweep ... --storage=postgresql://user:password@db-host/sweeps   # workers on many machines

Each trial trains the config (and its ``--config.<field>=`` overrides) with the space's
fields set, up to ``--trials_per_run`` trials at a time as one population run (each with
``--seeds`` seeds), and is judged by ``--metric`` of its final evaluation (the median
over its seeds). Run the same command on more machines (or twice on one, with
``--trials_per_run`` splitting its cores) to add workers: they share the study through
``--storage`` and stop once it has ``--trials``. Results, rewritten after every run, in
``--workdir`` (default ``runs/sweeps/<study>``): ``trials.csv``, ``best_config.py``
(ready to run), ``plots/``, and every run's folder under ``trials/``. A study keeps what it
searches: reusing its name with another space, metric, config or seeds is refused.
In the repository, ``python -m experiments.sweep`` is the same command; docs/usage.md
has the recipes (PostgreSQL for many machines, the journal file, the dashboard).
"""

from __future__ import annotations

import os
import sys

from absl import app, flags
from ml_collections import config_flags

from genjax.cli import launch

_CONFIG = config_flags.DEFINE_config_file("config", None, launch.CONFIG_HELP, lock_config=True)
_STUDY = flags.DEFINE_string("study", None, "The study's name in --storage (workers that "
                             "name the same study share it).")
_STORAGE = flags.DEFINE_string("storage", "sqlite:///runs/sweeps.db",
                               "sqlite:///path.db, any SQLAlchemy URL (postgresql://...), "
                               "or journal:path.log (Optuna's journal file).")
_SPACE = flags.DEFINE_string("space", None, "The search space: field=loguniform(lo, hi); "
                             "field=uniform(lo, hi); field=choice(v1, v2, ...) (default: the "
                             "config's sweep_space).")
_TRIALS = flags.DEFINE_integer("trials", None, "Trials in the study, all workers together "
                               "(default: the grid's size with --sampler=grid).")
_METRIC = flags.DEFINE_string("metric", "domain_fid", "The final metric to optimise (its "
                              "direction is known: genjax.ranking).")
_SEEDS = flags.DEFINE_integer("seeds", 1, "Seeds per trial (config.seed, +1, ...); the "
                              "trial's value is the median over them.")
_PER_RUN = flags.DEFINE_integer("trials_per_run", 0, "Trials trained together as one "
                                "population run; 0: one per core on a CPU, 8 on an "
                                "accelerator.")
_SAMPLER = flags.DEFINE_string("sampler", "tpe", "tpe, random or grid.")
_SAMPLER_SEED = flags.DEFINE_integer("sampler_seed", None, "Seed of the sampler.")
_PRUNER = flags.DEFINE_string("pruner", "median", "median, hyperband or none (it needs "
                              "evaluations during training: --config.eval_every).")
_WORKDIR = flags.DEFINE_string("workdir", None, "The sweep's folder (default "
                               "runs/sweeps/<study>).")
_HEARTBEAT = flags.DEFINE_integer("heartbeat", 60, "Seconds between a running trial's "
                                  "heartbeats (RDB storages); one silent for twice that is "
                                  "retried by another worker.")
_RETRIES = flags.DEFINE_integer("retries", 3, "Times a trial whose worker died is retried.")
_POLL = flags.DEFINE_float("poll", 2.0, "Seconds between looks at a running trial.")

_GIVEN: list[str] = []  # the command line as typed (a config's name, not its resolved path)


def given_config(argv: list[str]) -> tuple[str, tuple[str, ...]]:
    """``--config``'s value as typed and the ``--config.<field>=value`` overrides."""
    spec, overrides = None, []
    for i, arg in enumerate(argv):
        if arg.startswith("--config="):
            spec = arg.split("=", 1)[1]
        elif arg == "--config" and i + 1 < len(argv):
            spec = argv[i + 1]
        elif arg.startswith("--config."):
            has_value = "=" in arg or i + 1 >= len(argv)
            overrides.append(arg if has_value else f"{arg}={argv[i + 1]}")
    if spec is None:
        raise launch.ConfigError("--config is required: a shipped config's name or a config "
                                 "file's path.")
    return spec, tuple(overrides)


def build(config, argv: list[str]):
    """The `genjax.sweep.Sweep` the flags ask for, every input checked (nothing trains
    before this returns)."""
    from genjax import sweep
    from genjax.hparams import is_population
    from genjax.ranking import metric_key

    spec, overrides = given_config(argv)
    if is_population(config):
        raise sweep.SweepError("the config is a population already; a sweep makes its own "
                               "(--seeds, --trials_per_run).")
    space = sweep.parse_space(_SPACE.value if _SPACE.value is not None
                              else config.get("sweep_space", ""))
    sweep.check_space(space, config)
    trials = _TRIALS.value
    if trials is None and _SAMPLER.value == "grid":
        trials = sweep.grid_size(space)
    for name, value, low in (("trials", trials, 1), ("seeds", _SEEDS.value, 1),
                             ("trials_per_run", _PER_RUN.value, 0),
                             ("heartbeat", _HEARTBEAT.value, 1), ("retries", _RETRIES.value, 0)):
        if value is None or value < low:
            raise sweep.SweepError(f"--{name} must be at least {low}, got {value}.")
    if not _STUDY.value:
        raise sweep.SweepError("--study=NAME is required (workers naming it share the study).")
    metric = metric_key(_METRIC.value)
    sweep.metric_direction(metric)
    return sweep.Sweep(
        task=config.task, spec=spec, overrides=overrides, space=space, metric=metric,
        seeds=_SEEDS.value, trials=trials, per_run=_PER_RUN.value or sweep.default_per_run(),
        workdir=_WORKDIR.value or os.path.join("runs", "sweeps", _STUDY.value),
        poll_s=_POLL.value)


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    launch.quiet_logging()
    from genjax import sweep
    from genjax.report import info

    given_config(_GIVEN)  # --config given at all
    config = launch.load_config(_CONFIG)
    plan = build(config, _GIVEN)
    chosen = sweep.sampler(_SAMPLER.value, plan.space, _SAMPLER_SEED.value)
    pruner = sweep.pruner(_PRUNER.value)
    storage = sweep.open_storage(_STORAGE.value, _HEARTBEAT.value, _RETRIES.value)
    study = sweep.open_study(storage, _STUDY.value, plan.describe(), chosen, pruner)
    if _PRUNER.value != "none" and not config.get("eval_every"):
        info("No evaluations during training (config.eval_every is 0): nothing to prune by.")
    info(f"Study {_STUDY.value!r}: {plan.trials} trials of {plan.spec} over "
         f"{sweep.space_text(plan.space)}, by {plan.metric}; results in {plan.workdir}.")
    sweep.search(plan, study, storage, config)
    best = [t for t in sweep.table(study, plan.space) if t["state"] == "complete"]
    if best:
        info(f"Best: trial {study.best_trial.number}, {plan.metric} {study.best_value:.4g} "
             f"({', '.join(f'{k}={v:.4g}' for k, v in study.best_params.items())}); "
             f"{os.path.join(plan.workdir, sweep.BEST_CONFIG)} runs it.")


def console() -> None:
    """``genjax-sweep``: `main` with every mistake in one line."""
    launch.help_text(__doc__)
    _GIVEN[:] = sys.argv
    launch.run(main)


if __name__ == "__main__":
    console()
