"""Hyperparameter search: an Optuna study over any config, its trials trained as genjax runs.

A sweep worker (`search`, behind ``genjax-sweep`` / ``python -m experiments.sweep``) asks
the study for up to K trials at a time, trains them as one run in a child process
(``genjax-train``; K > 1 or several seeds: a population, ``rule="zip"``, each trial a
setting with the same seeds), reports the evaluations to the pruner while it runs and
tells the study each trial's final metric (the median over its seeds). Any number of
workers, on one machine or many, share a study through its storage: SQLite by default,
any SQLAlchemy URL (PostgreSQL, MySQL) for many machines, or Optuna's journal file. On
an RDB storage every running trial sends heartbeats; a trial whose worker died goes
stale and is run again by the next worker that asks (`RetryHeartbeatStaleTrialCallback`),
and a worker waits for the other workers' running trials before it leaves, so that it can
take over the trial of one that dies.

The search space is text (`parse_space`): ``field=loguniform(lo, hi); field=uniform(lo,
hi); field=choice(v1, v2, ...)`` over the fields a population may vary
(`genjax.hparams.VARIED_FIELDS`). ``--trials=N`` is the study's total: trials are counted
across workers (a retried trial replaces the one that died), and a trial asked past N by
a race between workers is never run (told failed, marked ``surplus``).

Results, rewritten after every batch (`write_results`): ``trials.csv`` (parameters,
metric, state, run directory), ``best_config.py`` (the best trial's config, ready to run)
and ``plots/`` (Optuna's optimisation history, parameter importances, parallel
coordinates; for a grid of choices a heatmap of the metric).
"""

from __future__ import annotations

import ast
import csv
import dataclasses
import glob
import math
import os
import re
import signal
import statistics
import subprocess
import sys
import time
import warnings
from typing import Any, Mapping, Sequence

from genjax import ranking, record, runlock
from genjax.hparams import VARIED_FIELDS
from genjax.report import info, warn

KINDS = ("uniform", "loguniform", "choice")
ATTRS = "genjax"       # the study's user attribute: what it searches (checked on reuse)
SURPLUS = "surplus"    # user attribute of a trial asked past --trials (never run)
TRIALS_CSV, BEST_CONFIG, PLOTS = "trials.csv", "best_config.py", "plots"
_SPACE_HELP = "field=loguniform(lo, hi), field=uniform(lo, hi) or field=choice(v1, v2, ...)"


class SweepError(ValueError):
    """A sweep that cannot run as asked (refused before any trial trains)."""


@dataclasses.dataclass(frozen=True)
class Param:
    """One dimension of the search space: ``field`` searched by ``kind`` over ``args``."""

    field: str
    kind: str
    args: tuple[float, ...]

    def text(self) -> str:
        return f"{self.field}={self.kind}({', '.join(repr(a) for a in self.args)})"

    def distribution(self):
        """The Optuna distribution of this dimension."""
        import optuna

        if self.kind == "choice":
            return optuna.distributions.CategoricalDistribution(self.args)
        return optuna.distributions.FloatDistribution(*self.args, log=self.kind == "loguniform")


def parse_space(text: str) -> tuple[Param, ...]:
    """The search space written as ``field=kind(args)`` terms separated by ``;`` or new
    lines, sorted by field.

    Raises:
      SweepError: an empty space, a term that does not parse, bounds out of order, a
        non-positive log-uniform bound, a choice that is not numbers, a field twice.
    """
    terms = [t.strip() for t in re.split(r"[;\n]", text or "") if t.strip()]
    if not terms:
        raise SweepError(f"the search space is empty; write it as terms separated by ';': "
                         f"{_SPACE_HELP}.")
    params = [_term(t) for t in terms]
    fields = [p.field for p in params]
    twice = sorted({f for f in fields if fields.count(f) > 1})
    if twice:
        raise SweepError(f"the search space names {', '.join(twice)} more than once.")
    return tuple(sorted(params, key=lambda p: p.field))


def _term(term: str) -> Param:
    """One ``field=kind(args)`` term."""
    m = re.fullmatch(r"([A-Za-z_][\w.]*)\s*=\s*(\w+)\s*\((.*)\)", term)
    if not m or m.group(2) not in KINDS:
        raise SweepError(f"cannot read the search-space term {term!r}: expected {_SPACE_HELP}.")
    field, kind = m.group(1), m.group(2)
    try:
        args = ast.literal_eval(f"({m.group(3)},)")
    except (SyntaxError, ValueError):
        args = None
    numbers = args and all(isinstance(a, (int, float)) and not isinstance(a, bool)
                           and math.isfinite(a) for a in args)
    if not numbers:
        raise SweepError(f"{term!r}: the arguments must be finite numbers.")
    args = tuple(float(a) for a in args)
    if kind == "choice":
        return Param(field, kind, args)
    if len(args) != 2 or not args[0] < args[1]:
        raise SweepError(f"{term!r}: {kind} takes two bounds, low < high.")
    if kind == "loguniform" and args[0] <= 0:
        raise SweepError(f"{term!r}: loguniform's bounds must be positive.")
    return Param(field, kind, args)


def space_text(space: Sequence[Param]) -> str:
    """The space as one canonical line (what the study records and compares)."""
    return "; ".join(p.text() for p in space)


def check_space(space: Sequence[Param], config) -> None:
    """Refuse a field the config lacks, or a structural one (the trials of one run are a
    population, which may vary only `VARIED_FIELDS`)."""
    for p in space:
        if p.field not in config:
            raise SweepError(f"the search space names {p.field!r}, which the config has no "
                             f"field for (--print_config lists its fields).")
        if p.field not in VARIED_FIELDS:
            raise SweepError(f"{p.field!r} is a structural field: a sweep searches what a "
                             f"population may vary, {', '.join(VARIED_FIELDS)}.")
        if isinstance(config[p.field], bool) or not isinstance(config[p.field], (int, float)):
            raise SweepError(f"{p.field!r} is {config[p.field]!r} in this config, not a "
                             f"number: set it first (--config.{p.field}=...).")


def metric_direction(metric: str) -> str:
    """``"minimize"`` or ``"maximize"`` for the final metric ``metric``.

    Raises:
      SweepError: a metric with no known direction (`genjax.ranking.DIRECTIONS`).
    """
    try:
        way = ranking.direction(metric)
    except KeyError:
        way = None
    if way is None:
        raise SweepError(f"--metric={metric!r}: no known direction for this metric (FID, KID, "
                         f"IS, NLL, bits/dim, ELBO, log-likelihood, ... : genjax.ranking).")
    return "minimize" if way == ranking.LOWER else "maximize"


def _shown(url: str) -> str:
    """``url`` with any password hidden (it goes into error lines and logs)."""
    return re.sub(r"://([^:/@]+):[^@]*@", r"://\1:***@", url)


def open_storage(url: str, heartbeat_s: int = 60, retries: int = 3):
    """The Optuna storage ``url`` names: ``journal:PATH`` (Optuna's journal file; no
    heartbeats), else an SQLAlchemy URL (``sqlite:///runs/sweeps.db``,
    ``postgresql://user:password@host/db``) as an RDB storage whose running trials send a
    heartbeat every ``heartbeat_s`` seconds; one stale for twice that is retried (at most
    ``retries`` times).

    Raises:
      SweepError: not a storage URL, its database driver missing, or the database
        unreachable or refusing (the cause in one line).
    """
    import optuna

    if url.startswith("journal:"):
        from optuna.storages.journal import JournalFileBackend

        path = url.removeprefix("journal:")
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        return optuna.storages.JournalStorage(JournalFileBackend(path))
    if "://" not in url:
        raise SweepError(f"--storage={url!r} is no storage URL: sqlite:///path.db, "
                         f"postgresql://user:password@host/db, or journal:path.log.")
    engine = {}
    if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
        os.makedirs(os.path.dirname(os.path.abspath(url.removeprefix("sqlite:///"))),
                    exist_ok=True)
        engine = {"connect_args": {"timeout": 60}}  # seconds a writer waits for the file lock
    elif url.startswith("postgresql"):
        engine = {"connect_args": {"connect_timeout": 10}}
    try:
        return _rdb_storage(url, engine, heartbeat_s, retries)
    except ImportError as e:  # Optuna's own, naming no module: the cause does
        missing = getattr(e.__cause__, "name", None) or _first_line(e)
        raise SweepError(f"--storage={_shown(url)}: its database driver ({missing}) is not "
                         f"installed (PostgreSQL: pip install 'genjax[postgres]').") from None
    except Exception as e:  # SQLAlchemy's and the driver's errors are many: all are the URL's
        raise SweepError(f"--storage={_shown(url)} cannot be opened: {_first_line(e)}") from None


def _rdb_storage(url: str, engine: dict, heartbeat_s: int, retries: int, tries: int = 5):
    """`optuna.storages.RDBStorage` with heartbeats; workers that start together on a
    new database race to create its tables, and the losers try again."""
    import optuna

    for attempt in range(tries):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return optuna.storages.RDBStorage(
                    url, engine_kwargs=engine, heartbeat_interval=heartbeat_s,
                    grace_period=2 * heartbeat_s,
                    heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(
                        max_retry=retries))
        except Exception as e:
            if not _creation_race(e) or attempt == tries - 1:
                raise
            time.sleep(0.5 + attempt)


def _creation_race(error: BaseException) -> bool:
    """Whether ``error`` is another worker creating the same tables at the same moment."""
    text = str(error)
    return type(error).__name__ == "IntegrityError" or any(
        s in text for s in ("already exists", "duplicate key", "UNIQUE constraint"))


def _first_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return f"{type(error).__name__}: {lines[0] if lines else ''}"


def open_study(storage, name: str, what: Mapping[str, Any], sampler, pruner):
    """The study ``name`` in ``storage`` (created when new) searching ``what`` (its space,
    metric, config and seeds, recorded as the study's user attribute `ATTRS`).

    Raises:
      SweepError: the study exists and searches something else.
    """
    import optuna

    direction = what["direction"]
    try:
        study = optuna.create_study(study_name=name, storage=storage, sampler=sampler,
                                    pruner=pruner, direction=direction, load_if_exists=True)
    except ValueError as e:  # an existing study of another direction
        raise SweepError(f"study {name!r} exists with another direction ({e}).") from None
    recorded = study.user_attrs.get(ATTRS)
    if recorded is None:
        study.set_user_attr(ATTRS, dict(what))
    elif recorded != dict(what):
        differ = ", ".join(f"{k} {recorded.get(k)!r} there, {v!r} here"
                           for k, v in what.items() if recorded.get(k) != v)
        raise SweepError(f"study {name!r} exists and searches something else ({differ}): "
                         f"choose another --study, or run it with its own settings.")
    return study


def is_retry(trial) -> bool:
    """Whether the (frozen) ``trial`` re-runs one whose worker died
    (`RetryHeartbeatStaleTrialCallback`)."""
    return "failed_trial" in trial.system_attrs


def _counted(trials) -> list:
    """The trials that use up the budget: every first attempt not asked past it (a retry
    replaces the attempt it retries)."""
    return [t for t in trials if not is_retry(t) and not t.user_attrs.get(SURPLUS)]


def left(study, budget: int) -> int:
    """Trials still to ask: the budget less the counted trials, plus those waiting to be
    retried."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    waiting = sum(t.state == TrialState.WAITING for t in trials)
    return max(0, budget - len(_counted(trials))) + waiting


def is_surplus(study, trial, budget: int) -> bool:
    """Whether the fresh ``trial`` was asked past the budget (two workers asking at once):
    ``budget`` counted trials already hold lower numbers."""
    trials = study.get_trials(deepcopy=False)
    if any(t.number == trial.number and is_retry(t) for t in trials):
        return False
    return len(_counted([t for t in trials if t.number < trial.number])) >= budget


@dataclasses.dataclass(frozen=True)
class Sweep:
    """What one sweep worker runs: trials of config ``spec`` (a shipped name or a path,
    with its ``:variant``) under ``overrides`` (``--config.<field>=value`` flags, passed
    to every trial), the fields of ``space`` set per trial, judged by the final
    ``metric`` (its median over ``seeds`` seeds), up to ``per_run`` trials per run, each
    run in a folder under ``workdir``."""

    task: str
    spec: str
    overrides: tuple[str, ...]
    space: tuple[Param, ...]
    metric: str
    seeds: int
    trials: int
    per_run: int
    workdir: str
    poll_s: float = 2.0

    def describe(self) -> dict[str, Any]:
        """What the study records and a reuse must match."""
        return {"config": " ".join((self.spec, *self.overrides)), "space": space_text(self.space),
                "metric": self.metric, "direction": metric_direction(self.metric),
                "seeds": self.seeds}


def default_per_run() -> int:
    """Trials per run when not given: 8 where an accelerator is present (one vmapped
    population), else one per core of this process (the ``workers`` strategy)."""
    if any(os.path.exists(d) for d in ("/dev/nvidia0", "/dev/accel0")):
        return 8
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def suggest(trial, space: Sequence[Param]) -> dict[str, float]:
    """The trial's value of every field (asked of the sampler, or the retried trial's)."""
    out = {}
    for p in space:
        if p.kind == "choice":
            out[p.field] = float(trial.suggest_categorical(p.field, list(p.args)))
        else:
            out[p.field] = trial.suggest_float(p.field, *p.args, log=p.kind == "loguniform")
    return out


def run_flags(values: Sequence[Mapping[str, float]], seeds: int, metric: str) -> list[str]:
    """The ``--config`` flags that train these trials' settings as one run: the fields set
    for one trial of one seed, else a population (rule zip: trial i is setting i, each with
    ``seeds`` seeds, members ``i * seeds ... i * seeds + seeds - 1``)."""
    if len(values) == 1 and seeds == 1:
        return [f"--config.{k}={v!r}" for k, v in values[0].items()]
    flags = ["--config.population.rule=zip", f"--config.population.seeds={seeds}",
             f"--config.population.rank_by={metric}"]
    return flags + [f"--config.population.{k}=({', '.join(repr(v[k]) for v in values)},)"
                    for k in values[0]]


def _metrics_of(run_dir: str, member: int | None) -> tuple[str, str]:
    """The folder whose ``metrics.jsonl`` holds member ``member``'s rows (None: a run of
    one) and the suffix its metrics carry there."""
    if member is None:
        return run_dir, ""
    from genjax.workers import member_dir

    own = member_dir(run_dir, member)
    return (own, "") if os.path.isdir(own) else (run_dir, f"/m{member}")


def member_values(run_dir: str, member: int | None, metric: str, final: bool) -> dict[int, float]:
    """Step -> the member's ``metric`` in its evaluations (``final``: the final one only;
    else the ones before it), finite values only."""
    directory, suffix = _metrics_of(run_dir, member)
    rows, key = record.read_rows(os.path.join(directory, record.METRICS)), metric + suffix
    return {r["step"]: float(r[key]) for r in rows
            if bool(r.get(record.FINAL)) == final and isinstance(r.get(key), (int, float))
            and math.isfinite(r[key])}


def trial_values(run_dir: str, members: Sequence[int] | None, metric: str, final: bool
                 ) -> dict[int, float]:
    """Step -> the median over the trial's seeds (its ``members``; None: the run is the
    trial) of ``metric``, at the steps every seed has."""
    per_seed = [member_values(run_dir, m, metric, final) for m in (members or [None])]
    steps = set.intersection(*(set(v) for v in per_seed)) if per_seed else set()
    return {s: statistics.median(v[s] for v in per_seed) for s in sorted(steps)}


def produced(run_dir: str, member: int | None) -> list[str]:
    """The metrics of the member's final evaluation (for the error naming them)."""
    directory, suffix = _metrics_of(run_dir, member)
    return sorted(k.removesuffix(suffix) for k in record.final_metrics(directory)
                  if k.endswith(suffix))


@dataclasses.dataclass
class Batch:
    """Trials trained as one run in ``run_dir``: trial i is the population's setting i
    (its seeds' members in ``members[i]``), or the run itself when it is one trial of one
    seed (``members`` None)."""

    trials: list
    values: list[dict[str, float]]
    run_dir: str
    members: list[list[int]] | None
    pruned: dict[int, int] = dataclasses.field(default_factory=dict)  # trial number -> step
    reported: dict[int, set] = dataclasses.field(default_factory=dict)  # number -> steps
    beaten_at: float = -math.inf  # time.monotonic() of the last heartbeat

    def seeds_of(self, i: int) -> list[int] | None:
        return None if self.members is None else self.members[i]


def ask(study, sweep: Sweep, k: int, storage=None) -> Batch | None:
    """Up to ``k`` trials (retries first), each one's fields suggested as it is asked (so
    that the next is sampled knowing them) and, on a ``storage`` with heartbeats, its first
    heartbeat sent at once (a trial that never beat is never found stale); a surplus one is
    told failed and left out. None when nothing is left to run."""
    from optuna.trial import TrialState

    trials, values = [], []
    for _ in range(k):
        with warnings.catch_warnings():  # `train` beats for the trial
            warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed")
            trial = study.ask()
        _record_beats(storage, [trial])
        if is_surplus(study, trial, sweep.trials):
            trial.set_user_attr(SURPLUS, True)
            tell(study, trial, state=TrialState.FAIL)
            break
        trials.append(trial)
        values.append(suggest(trial, sweep.space))
    if not trials:
        return None
    name = "t" + "_".join(str(t.number) for t in trials)
    one = len(trials) == 1 and sweep.seeds == 1
    members = None if one else [list(range(i * sweep.seeds, (i + 1) * sweep.seeds))
                                for i in range(len(trials))]
    batch = Batch(trials, values, os.path.abspath(os.path.join(sweep.workdir, "trials", name)),
                  members)
    for i, t in enumerate(trials):
        t.set_user_attr("run", batch.run_dir)
        t.set_user_attr("members", batch.seeds_of(i))
    return batch


def command(sweep: Sweep, batch: Batch) -> list[str]:
    """The ``genjax-train`` command line of the batch's run."""
    return [sys.executable, "-m", "genjax.cli.train", sweep.task, f"--config={sweep.spec}",
            f"--workdir={batch.run_dir}", *sweep.overrides,
            *run_flags(batch.values, sweep.seeds, sweep.metric)]


def _beat(storage, batch: Batch) -> None:
    """A heartbeat for each of the batch's trials, at most twice per heartbeat interval
    (RDB storages; Optuna's own heartbeat thread runs only inside ``Study.optimize``)."""
    interval = getattr(storage, "heartbeat_interval", None)
    if interval and time.monotonic() - batch.beaten_at >= interval / 2:
        _record_beats(storage, batch.trials)
        batch.beaten_at = time.monotonic()


def _record_beats(storage, trials) -> None:
    """A heartbeat for each trial, on a storage that keeps them (else nothing)."""
    if getattr(storage, "heartbeat_interval", None):
        for t in trials:
            storage.record_heartbeat(t._trial_id)


def _report(batch: Batch, metric: str) -> None:
    """Each trial's new intermediate evaluations to the pruner; trials it prunes are
    noted with their step."""
    for i, t in enumerate(batch.trials):
        if t.number in batch.pruned:
            continue
        done = batch.reported.setdefault(t.number, set())
        for step, value in trial_values(batch.run_dir, batch.seeds_of(i), metric,
                                        final=False).items():
            if step not in done:
                t.report(value, step)
                done.add(step)
                if t.should_prune():
                    batch.pruned[t.number] = step
                    break


def train(sweep: Sweep, batch: Batch, storage) -> int:
    """Train the batch's run as a child process that dies with this one, beating and
    reporting while it runs; stop it once every trial is pruned. Its exit status (0 when
    stopped for pruning)."""
    os.makedirs(os.path.dirname(batch.run_dir), exist_ok=True)
    with open(batch.run_dir + ".log", "a") as log:
        child = subprocess.Popen(command(sweep, batch), stdout=log, stderr=subprocess.STDOUT,
                                 env=runlock.child_env())
        while child.poll() is None:
            _beat(storage, batch)
            _report(batch, sweep.metric)
            if len(batch.pruned) == len(batch.trials):
                child.send_signal(signal.SIGTERM)
                child.wait()
                return 0
            time.sleep(sweep.poll_s)
    _report(batch, sweep.metric)
    return child.returncode


def tell(study, trial, value: float | None = None, state=None) -> None:
    """``study.tell``, outside ``Study.optimize``: the grid sampler asks the study to stop
    once its grid is done, which raises there after the trial is stored; the worker's
    loop stops by the budget instead."""
    try:
        study.tell(trial, value, state=state)
    except RuntimeError as e:
        if "Study.stop" not in str(e):
            raise


def _error_line(log_path: str) -> str:
    """The run's one-line error (its last ``error:`` line, else its last line)."""
    try:
        with open(log_path, errors="replace") as f:
            lines = [line.strip() for line in f if line.strip()]
    except OSError:
        lines = []
    errors = [line for line in lines if line.startswith("error:")]
    return (errors or lines or ["(no output)"])[-1][:500]


def conclude(study, sweep: Sweep, batch: Batch, status: int) -> None:
    """Tell the study each trial's outcome: pruned, its final metric (median over its
    seeds), or failed (the run's error, or no finite metric: a diverged seed).

    Raises:
      SweepError: the runs produce no ``sweep.metric`` at all, or the run failed before
        it trained a step (a setup error every trial would meet); after telling.
    """
    from optuna.trial import TrialState

    missing = None
    for i, t in enumerate(batch.trials):
        label = f"Trial {t.number} ({', '.join(f'{k}={v:.4g}' for k, v in batch.values[i].items())})"
        if t.number in batch.pruned:
            tell(study, t, state=TrialState.PRUNED)
            info(f"{label}: pruned at step {batch.pruned[t.number]}.")
            continue
        finals = trial_values(batch.run_dir, batch.seeds_of(i), sweep.metric, final=True)
        if finals:
            value = finals[max(finals)]
            tell(study, t, value)
            info(f"{label}: {sweep.metric} {value:.4g}.")
            continue
        seeds = batch.seeds_of(i) or [None]
        names = produced(batch.run_dir, seeds[0])
        error = (_error_line(batch.run_dir + ".log") if status else
                 f"no finite final {sweep.metric} (a seed diverged?)")
        if names and sweep.metric not in names:
            missing = names
        t.set_user_attr("error", error)
        tell(study, t, state=TrialState.FAIL)
        warn(f"{label}: failed: {error} (run {batch.run_dir})")
    if missing:
        raise SweepError(f"--metric={sweep.metric}: the runs produce no such metric; their "
                         f"final evaluation has {', '.join(missing)}.")
    if status and not _trained(batch.run_dir):
        raise SweepError(f"the run of trial(s) {', '.join(str(t.number) for t in batch.trials)} "
                         f"failed before training ({_error_line(batch.run_dir + '.log')}); "
                         f"its log: {batch.run_dir}.log")


def _trained(run_dir: str) -> bool:
    """Whether the run (or a member of it) logged any metric row."""
    from genjax.workers import MEMBERS

    return any(record.read_rows(p) for p in [os.path.join(run_dir, record.METRICS)] + glob.glob(
        os.path.join(run_dir, MEMBERS, "*", record.METRICS)))


def table(study, space: Sequence[Param]) -> list[dict[str, Any]]:
    """A row per trial that ran (surplus ones left out): number, state, value, the
    fields, seconds, run directory and members, error."""
    rows = []
    for t in study.get_trials(deepcopy=False):
        if t.user_attrs.get(SURPLUS):
            continue
        seconds = (t.datetime_complete - t.datetime_start).total_seconds() \
            if t.datetime_complete and t.datetime_start else None
        rows.append({"trial": t.number, "state": t.state.name.lower(), "value": t.value,
                     **{p.field: t.params.get(p.field) for p in space},
                     "seconds": None if seconds is None else round(seconds, 1),
                     "retry_of": t.system_attrs.get("failed_trial"),
                     "run": t.user_attrs.get("run"), "members": t.user_attrs.get("members"),
                     "error": t.user_attrs.get("error")})
    return rows


def best_config_text(sweep: Sweep, config, best, study_name: str) -> str:
    """A config file that runs the best trial's setting: the sweep's config, its
    overrides and the trial's fields."""
    name, _, variant = sweep.spec.partition(":")
    shipped = os.sep not in name and not name.endswith(".py")
    load = (f"from genjax.configs import {name} as base\n" if shipped else
            f"import importlib.util\n\n_spec = importlib.util.spec_from_file_location(\n"
            f"    'base', {os.path.abspath(name)!r})\nbase = importlib.util.module_from_spec(_spec)\n"
            f"_spec.loader.exec_module(base)\n")
    fields = [f.split("=", 1)[0].removeprefix("--config.") for f in sweep.overrides]
    sets = [f"    c.{f} = {_field(config, f)!r}  # the sweep's override" for f in fields]
    sets += [f"    c.{k} = {v!r}" for k, v in best.params.items()]
    return (f'"""The best trial of study {study_name!r}: trial {best.number}, {sweep.metric} '
            f'{best.value:.6g}\n(median of {sweep.seeds} seed(s)), searched over '
            f'{space_text(sweep.space)}.\n\n  genjax-train {sweep.task} --config=<this file> '
            f'--workdir=runs/best\n"""\n\n{load}\n\ndef get_config(variant: str = '
            f'{variant!r}):\n    c = base.get_config(variant)\n' + "\n".join(sets)
            + "\n    return c\n")


def _field(config, dotted: str):
    for part in dotted.split("."):
        config = config[part]
    return config


def write_results(study, sweep: Sweep, config) -> None:
    """``trials.csv``, ``best_config.py`` and the plots in the sweep's workdir (each
    written whole, then moved into place)."""
    from optuna.trial import TrialState

    os.makedirs(sweep.workdir, exist_ok=True)
    rows = table(study, sweep.space)
    with record.atomic_file(os.path.join(sweep.workdir, TRIALS_CSV)) as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else ["trial"])
        writer.writeheader()
        writer.writerows(rows)
    if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        return
    with record.atomic_file(os.path.join(sweep.workdir, BEST_CONFIG)) as f:
        f.write(best_config_text(sweep, config, study.best_trial, study.study_name))
    plots(study, os.path.join(sweep.workdir, PLOTS))
    if len(sweep.space) >= 2 and all(p.kind == "choice" for p in sweep.space):
        heatmap(table(study, sweep.space), sweep.space, sweep.metric,
                os.path.join(sweep.workdir, PLOTS, "heatmap.png"))


def plots(study, folder: str) -> list[str]:
    """Optuna's optimisation history, parameter importances and parallel coordinates as
    PNGs in ``folder`` (a plot the trials cannot make yet, e.g. importances of fewer
    than two finished trials, is left out); the files written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    import optuna
    from optuna.visualization import matplotlib as vis

    os.makedirs(folder, exist_ok=True)
    written = []
    for name, plot in (("history", vis.plot_optimization_history),
                       ("importances", vis.plot_param_importances),
                       ("parallel_coordinates", vis.plot_parallel_coordinate)):
        try:
            with warnings.catch_warnings():  # experimental API; "too few trials" notes
                warnings.simplefilter("ignore")
                axes = plot(study)
        except (ValueError, RuntimeError, ZeroDivisionError):
            continue
        figure = np.atleast_1d(axes).flat[0].figure
        path = os.path.join(folder, f"{name}.png")
        with record.atomic_file(path, "wb") as f, warnings.catch_warnings():
            warnings.simplefilter("ignore")  # matplotlib on a one-value axis
            figure.savefig(f, format="png", dpi=100, bbox_inches="tight")
        plt.close(figure)
        written.append(path)
    return written


def sampler(kind: str, space: Sequence[Param], seed: int | None):
    """``tpe`` (Optuna's TPE, with ``constant_liar`` so that trials asked while others run
    spread out), ``random``, or ``grid`` (every combination of ``choice`` fields).

    Raises:
      SweepError: an unknown kind, or a grid over a field that is not a choice.
    """
    import optuna

    if kind == "tpe":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.samplers.TPESampler(seed=seed, constant_liar=True)
    if kind == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if kind == "grid":
        ranged = [p.field for p in space if p.kind != "choice"]
        if ranged:
            raise SweepError(f"--sampler=grid needs choice(...) for every field; "
                             f"{', '.join(ranged)} {'is' if len(ranged) == 1 else 'are'} not.")
        return optuna.samplers.GridSampler({p.field: list(p.args) for p in space}, seed=seed)
    raise SweepError(f"--sampler={kind!r}: one of tpe, random, grid.")


def grid_size(space: Sequence[Param]) -> int:
    """The number of combinations of the space's choices."""
    return math.prod(len(p.args) for p in space)


def pruner(kind: str):
    """``median`` (Optuna's median pruner: a trial whose evaluation is worse than the
    median of earlier trials' at that step stops, after 5 trials and the first
    evaluation), ``hyperband``, or ``none``.

    Raises:
      SweepError: an unknown kind.
    """
    import optuna

    kinds = {"median": lambda: optuna.pruners.MedianPruner(n_startup_trials=5),
             "hyperband": optuna.pruners.HyperbandPruner,
             "none": optuna.pruners.NopPruner}
    if kind not in kinds:
        raise SweepError(f"--pruner={kind!r}: one of {', '.join(kinds)}.")
    return kinds[kind]()


def _others_running(study) -> bool:
    from optuna.trial import TrialState

    return bool(study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)))


def search(sweep: Sweep, study, storage, config) -> None:
    """Run trials until the study has ``sweep.trials`` (counted across workers): ask a
    batch, train it, tell it, rewrite the results; before each ask, fail the trials
    whose worker stopped beating (and queue their retries). A worker with nothing left
    to ask waits while other workers' trials run on an RDB storage (to retry one whose
    worker dies), then leaves."""
    import optuna

    beating = bool(getattr(storage, "heartbeat_interval", None))
    while True:
        if beating:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                optuna.storages.fail_stale_trials(study)
        k = min(sweep.per_run, left(study, sweep.trials))
        if k == 0:
            if beating and _others_running(study):
                time.sleep(sweep.poll_s)
                continue
            break
        batch = ask(study, sweep, k, storage)
        if batch is None:
            continue
        info(f"Trial(s) {', '.join(str(t.number) for t in batch.trials)}: one run in "
             f"{batch.run_dir} ({len(batch.trials)} setting(s) x {sweep.seeds} seed(s)).")
        status = train(sweep, batch, storage)
        conclude(study, sweep, batch, status)
        write_results(study, sweep, config)
    write_results(study, sweep, config)


def heatmap(rows: Sequence[Mapping[str, Any]], space: Sequence[Param], metric: str,
            path: str) -> None:
    """The metric over a grid of choices: the two fields with the most values as rows
    and columns, one panel per combination of the others, each cell its trial's value
    (blank until it finishes; a trial that failed shows ``x``)."""
    import matplotlib

    matplotlib.use("Agg")
    import itertools

    import matplotlib.pyplot as plt

    by_size = sorted(space, key=lambda p: -len(p.args))
    grid_of, facets = by_size[:2], by_size[2:]
    panels = [dict(zip((p.field for p in facets), values))
              for values in itertools.product(*(p.args for p in facets))]
    done = {tuple(r[p.field] for p in space): r["value"] for r in rows
            if r["state"] in ("complete", "fail")}
    finite = [v for v in done.values() if v is not None]
    scale = (min(finite), max(finite)) if finite else (0.0, 1.0)
    cmap = "viridis_r" if metric_direction(metric) == "minimize" else "viridis"
    with plt.style.context("default"):  # Optuna's plots switch the global style
        figure, axes = plt.subplots(
            1, len(panels), squeeze=False, sharey=True,
            figsize=(0.9 * len(grid_of[1].args) * len(panels) + 2, 0.7 * len(grid_of[0].args) + 1.6))
        for ax, fixed in zip(axes[0], panels):
            image = _panel(ax, done, space, grid_of, fixed, scale, cmap)
        axes[0][0].set_ylabel(grid_of[0].field)
        figure.colorbar(image, ax=list(axes[0]), label=metric, shrink=0.8)
        with record.atomic_file(path, "wb") as f:
            figure.savefig(f, format="png", dpi=110, bbox_inches="tight")
        plt.close(figure)


def _panel(ax, done: Mapping[tuple, float | None], space: Sequence[Param],
           grid_of: Sequence[Param], fixed: Mapping[str, float], scale, cmap):
    """One panel of `heatmap`: the cells of ``grid_of``'s two fields at the ``fixed``
    values of the others."""
    import numpy as np

    rows, cols = grid_of
    grid = np.full((len(rows.args), len(cols.args)), np.nan)
    labels = {}
    for i, a in enumerate(rows.args):
        for j, b in enumerate(cols.args):
            key = tuple({rows.field: a, cols.field: b, **fixed}[p.field] for p in space)
            if key in done:
                value = done[key]
                grid[i, j] = np.nan if value is None else value
                labels[i, j] = "x" if value is None else f"{value:.4g}"
    image = ax.imshow(grid, cmap=cmap, vmin=scale[0], vmax=scale[1])
    middle = (scale[0] + scale[1]) / 2
    for (i, j), text in labels.items():
        dark = np.isfinite(grid[i, j]) and (grid[i, j] > middle) == (cmap == "viridis_r")
        ax.text(j, i, text, ha="center", va="center", fontsize=8,
                color="white" if dark else "black")
    ax.set_xticks(range(len(cols.args)), [f"{v:g}" for v in cols.args])
    ax.set_yticks(range(len(rows.args)), [f"{v:g}" for v in rows.args])
    ax.set_xlabel(cols.field)
    ax.set_title(", ".join(f"{k}={v:g}" for k, v in fixed.items()), fontsize=9)
    return image
