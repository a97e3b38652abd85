"""`train_and_evaluate(config, workdir)`: the one training loop every experiment uses.

Set-up (data, task, state), auto-resume from ``<workdir>/checkpoints``, the step
compiled under the data-parallel driver ``config.parallel`` (`genjax.parallel`),
metrics kept on device between log steps, a finiteness check of the metrics and of
every floating leaf of the state (parameters, optimizer moments, BatchNorm statistics,
EMA weights, spectral-norm vectors, persistent chains) at every log step and so before
every checkpoint (a saved state is always a good one; a non-finite run stops with
`NonFiniteError` naming the first bad leaf, or with ``config.skip_nonfinite_steps``
drops the bad updates and counts them in ``train/nonfinite_skipped``), periodic sample
grids and evaluations, and a final evaluation, sample grid and loss-curve plot.

What is trained is `setup(config)`'s `genjax.assembly.Setup`: one model, or a
population of K seeds or hyperparameter values as one run (`genjax.population`, when
``config.population`` names one), whose state, batches, grids and evaluation cover
every member.

One run per workdir: a run holds the workdir's lock (`genjax.runlock`) from before its
first write to its end; a second launcher stops at once with `WorkdirInUseError`. A
finished run run again with the same config says so and touches nothing.

A resume never rewrites the run's record (`genjax.record`): ``config.json`` stays the
config that started the run; a config whose networks differ, or that changes a field
outside `genjax.record.RESUMABLE` and the family's `genjax.tasks.RESUMABLE`, is
refused before anything is written. The record is written only once the run has
actually started (its first step has run, or its final evaluation begins): a changed
field is then appended to ``resumes.jsonl`` and logged in one line, and metric rows past
the resumed step move to ``metrics.superseded.jsonl``. When checkpoints existed and
none is usable the run stops (`genjax.checkpoint.CheckpointsUnreadableError`) unless
``config.start_over``.

Outputs in ``workdir``: ``config.json``, ``resumes.jsonl``, ``metrics.jsonl``,
``tensorboard/``, ``samples/*.png``, ``curves.png``, ``checkpoints/<step>/``.
"""

from __future__ import annotations

import contextlib
import os
import tempfile

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from genjax import assembly, parallel, population, ranking, record, runlock, steps, workers
from genjax import data as gdata
# Re-exported: what a run is made of and how it is scored live in `genjax.assembly`.
from genjax.assembly import (Setup, data_initialized, data_specs, evaluate,  # noqa: F401
                             next_batches, score_samples)
from genjax.checkpoint import Checkpointer, host_values, leaf_path
from genjax.report import (MetricWriter, Progress, TrainClock, check_writers, info, plot_curves,
                           save_grid, warn)
from genjax.state import TrainState
from genjax.tasks import RESUMABLE


def setup(config: ml_collections.ConfigDict) -> Setup:
    """`genjax.assembly.setup` of ``config``, or `genjax.population.setup` when it names a
    population (``config.population``): what `train_and_evaluate` trains."""
    return population.setup(config) if population.is_population(config) else \
        assembly.setup(config)


class NonFiniteError(FloatingPointError):
    """Training produced NaN or Inf; the run stops and the last good checkpoint stays.
    ``step``: the step it was seen at."""

    def __init__(self, message: str, step: int | None = None):
        super().__init__(message)
        self.step = step


_all_finite = jax.jit(steps.all_finite)


def _first_nonfinite(tree) -> str:
    """The path of the first floating leaf of ``tree`` holding NaN or Inf (on the host:
    only called once the fused check has failed)."""
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        if jnp.issubdtype(leaf.dtype, jnp.inexact) and not np.isfinite(host_values(leaf)).all():
            return leaf_path(path)
    return "(none found on this host)"


def _check_finite(steps_seen: tuple[int, int], metrics: dict[str, float], state,
                  ckpt: Checkpointer) -> None:
    """Raise `NonFiniteError` naming the metric, or else the first leaf of the whole
    state (by path), that went non-finite within the steps ``steps_seen`` (first, last)
    since the previous check. The state is checked by one fused reduction over every
    floating leaf (`steps.all_finite`)."""
    bad = [k for k, v in metrics.items() if not np.isfinite(v)]
    if not bad and not bool(_all_finite(state)):
        bad = [f"state leaf {_first_nonfinite(state)}"]
    if bad:
        first, last = steps_seen
        raise NonFiniteError(
            f"Non-finite values in steps {first}-{last}, seen at step {last}: {', '.join(bad)} "
            f"({', '.join(f'{k}={v}' for k, v in metrics.items())}). Training stopped; "
            f"{_kept(ckpt)} config.skip_nonfinite_steps=True skips such updates instead.", last)


def _kept(ckpt: Checkpointer) -> str:
    """What a stopped run leaves to resume from (after pending writes are on disk)."""
    ckpt.wait()
    latest = ckpt.latest_step()
    if latest is None:
        return f"no checkpoint had been written yet (the first is due at step {ckpt.every})."
    return f"the last good checkpoint (step {latest}) is kept in {ckpt.directory}."


def _check_skipped(steps_seen: tuple[int, int], n_skipped: int, limit: float,
                   ckpt: Checkpointer) -> None:
    """Raise `NonFiniteError` when more than ``limit`` of the window's updates were
    skipped as non-finite: a run that skips most of its updates is diverging."""
    first, last = steps_seen
    if n_skipped > limit * (last - first + 1):
        raise NonFiniteError(
            f"{n_skipped} of {last - first + 1} updates in steps {first}-{last} were "
            f"non-finite and skipped, more than config.max_skipped_fraction={limit}: the run "
            f"is diverging. Training stopped; {_kept(ckpt)} Lower the learning rate, or raise "
            f"the limit.", last)


def _steps_in_call(step: int, steps_per_call: int, config: ml_collections.ConfigDict) -> int:
    """Steps the next compiled call runs after ``step``: ``steps_per_call``, cut short at
    the next log, sample, evaluation or checkpoint step so those happen where configured
    (a shorter call compiles once more; cadences divisible by it avoid that)."""
    cadences = [config.log_every, config.sample_every, config.checkpoint_every,
                config.eval_every, config.num_steps]
    return min(steps_per_call, *(c - step % c for c in cadences if c))


def _prepare_workdir(workdir: str) -> str:
    """``workdir`` made absolute, created, and checked writable (a clear error if not)."""
    workdir = os.path.abspath(workdir)
    try:
        os.makedirs(workdir, exist_ok=True)
        with tempfile.TemporaryFile(dir=workdir):
            pass
    except OSError as e:
        raise PermissionError(f"Cannot write to workdir {workdir} ({e.strerror}); choose "
                              f"another --workdir.") from e
    return workdir


def _compile(run: Setup) -> parallel.Driver:
    """The task's step under the driver ``config.parallel`` (with non-finite updates
    skipped when ``config.skip_nonfinite_steps``)."""
    step = steps.skip_nonfinite(run.task.train_step) if run.config.get("skip_nonfinite_steps") \
        else run.task.train_step
    return run.driver(step)


class _Record:
    """The run's record of its start (`genjax.record`), written once, when the run has
    actually started: a start or resume that fails before (a refused value, a dataset
    that cannot be read) leaves the record as it was. Calling it again does nothing."""

    def __init__(self, workdir: str, config: ml_collections.ConfigDict, step: int,
                 ckpt: Checkpointer, dataset: str):
        self.workdir, self.config, self.step, self.ckpt = workdir, config, step, ckpt
        self.dataset, self.written = dataset, False

    def __call__(self) -> None:
        if self.written:
            return
        self.written = True
        changed, moved = {}, 0
        if jax.process_index() == 0:
            changed = record.record_start(self.workdir, self.config, self.step)
            record.record_dataset(self.workdir, self.config.dataset, self.dataset, self.step)
            moved = record.supersede_metrics(self.workdir, self.step)
        if self.step == 0:
            return
        notes = [f"config changed since it started: {record.describe(changed)} (recorded in "
                 f"{record.RESUMES})"] if changed else []
        if moved:
            notes.append(f"{moved} metric row(s) past step {self.step} moved to "
                         f"{record.SUPERSEDED}")
        info(f"Resumed from {self.ckpt.directory} at step {self.step}"
             + "".join(f"; {n}" for n in notes) + ".")


def _check_resume(run: Setup, workdir: str) -> None:
    """Refuse (`genjax.record.ResumeRefusedError`) a resume that changes a field outside
    the common and the family's resumable ones, or whose data is not the data the run
    started on (`genjax.data.dataset_id`); nothing to check without a record."""
    if os.path.exists(os.path.join(workdir, record.CONFIG)):
        record.check_resumable(workdir, run.config, RESUMABLE.get(run.config.task, ()))
        record.check_dataset(workdir, run.config.dataset, gdata.dataset_id(run.train_spec))


def _start(run: Setup, driver: parallel.Driver, ckpt: Checkpointer, workdir: str
           ) -> tuple[TrainState, _Record]:
    """The placed state to train from: the newest usable checkpoint, else a fresh one
    (only when none existed, or ``config.start_over``), and the record to write once the
    run has started. Placed (committed) either way, so a resumed run reuses the fresh
    run's executable."""
    c = run.config
    fresh = run.init_state()
    state = driver.place(fresh)
    start_over = c.get("start_over", False)
    restored = ckpt.restore(driver.saveable(state), start_over=start_over)
    if restored is None:
        if ckpt.set_aside():
            info(f"Starting over from step 0 (config.start_over); the damaged checkpoints stay "
                 f"in {ckpt.aside_directory}.")
        initialized = run.data_initialized(fresh)
        if initialized is not fresh:
            state = driver.place(initialized)
        return state, _Record(workdir, c, 0, ckpt, gdata.dataset_id(run.train_spec))
    if start_over:  # not checked up front: start_over may have found nothing usable
        _check_resume(run, workdir)
    return driver.place(restored), _Record(workdir, c, int(restored.step), ckpt,
                                           gdata.dataset_id(run.train_spec))


def _log(acc: dict, n_acc: int, step: int, state: TrainState, run: Setup, driver, ckpt,
         progress: Progress, writer: MetricWriter, clock: TrainClock) -> None:
    """Means of the ``n_acc`` steps' summed metrics ``acc`` (skipped updates excluded):
    checked finite, counted, written with the steady examples/s (`Progress.update`) and
    the training minutes so far."""
    acc = jax.device_get(driver.local(acc))
    n_skipped = int(acc.pop(steps.SKIPPED, 0))
    window = (step - n_acc + 1, step)
    _check_skipped(window, n_skipped, run.config.get("max_skipped_fraction", 0.5), ckpt)
    means = {f"train/{k}": float(v) / (n_acc - n_skipped) for k, v in acc.items()
             if n_acc > n_skipped}
    means = run.train_metrics(means, state)
    _check_finite(window, means, state, ckpt)
    if run.config.get("skip_nonfinite_steps"):
        means["train/nonfinite_skipped"] = n_skipped
        if n_skipped:
            info(f"Skipped {n_skipped} non-finite update(s) in steps {step - n_acc + 1}-{step}.")
    means["train/examples_per_sec"] = progress.update(step, means)
    means["train/minutes"] = clock.minutes()
    writer.scalars(step, means)


def _out_of_time(clock: TrainClock, config: ml_collections.ConfigDict) -> bool:
    """Whether this invocation has used its ``config.train_minutes`` (0: no limit)."""
    budget = config.get("train_minutes", 0)
    return bool(budget) and clock.minutes() >= budget


def _compile_step(driver: parallel.Driver, state: TrainState, batch, clock: TrainClock,
                  progress: Progress | None) -> None:
    """Compile the step for arguments like ``state`` and ``batch`` ahead of its call, as
    the clock's compile phase; ``progress`` (the first compile) says so, with the time,
    and the log steps' finiteness check of the state compiles with it."""
    if progress is not None:
        progress.compiling(driver.describe())
    before = clock.spent["compile"]
    with clock.phase("compile"):
        driver.compile(state, batch)
        if progress is not None:
            _all_finite.lower(state).compile()
    if progress is not None:
        progress.compiled(clock.spent["compile"] - before)


def _final_evaluation(run: Setup, driver: parallel.Driver, ckpt: Checkpointer, state: TrainState,
                      step: int) -> dict[str, float]:
    """The final evaluation of ``state``, before its checkpoint (``config.keep_best`` ranks
    it); when it fails, the step is saved without metrics before the error goes on."""
    try:
        return run.evaluate(driver.local(state), final=True)
    except BaseException:
        ckpt.save(step, driver.saveable(state), force=True)
        raise


def _outputs(run: Setup, driver: parallel.Driver, ckpt: Checkpointer, state: TrainState,
             step: int, last: bool, writer: MetricWriter, clock: TrainClock
             ) -> dict[str, float] | None:
    """The grid, evaluation and checkpoint due after the call that reached ``step``. Each
    evaluation precedes its step's checkpoint, which carries its metrics; with
    ``config.keep_best`` the final evaluation does too, and is returned (else None)."""
    c, final, evaluated = run.config, None, None
    if step % c.sample_every == 0 and not last:  # the last grid is _finish's
        with clock.phase("pictures", sync=state):
            writer.images(step, run.images(driver.local(state)))
    if c.eval_every and step % c.eval_every == 0 and not last:
        with clock.phase("evaluation", sync=state):
            evaluated = run.evaluate(driver.local(state))
            writer.scalars(step, evaluated)
    if last and c.get("keep_best"):
        with clock.phase("evaluation", sync=state):
            final = evaluated = _final_evaluation(run, driver, ckpt, state, step)
    if step % c.checkpoint_every == 0 or last:
        with clock.phase("checkpoints", sync=state):
            ckpt.save(step, driver.saveable(state), force=last, metrics=evaluated)
    ranking.check_produced(c, evaluated, step)
    return final


def _train(run: Setup, driver: parallel.Driver, ckpt: Checkpointer, state: TrainState,
           writer: MetricWriter, clock: TrainClock, started: _Record
           ) -> tuple[TrainState, dict[str, float] | None]:
    """Steps from ``state.step`` to ``config.num_steps`` (or until ``config.train_minutes``
    have passed, with a checkpoint there), with logging, grids, evaluations and
    checkpoints at their cadences; ``started()`` once the first call has run. Each
    evaluation precedes its step's checkpoint, which carries its metrics; with
    ``config.keep_best`` the final evaluation does too, and is returned (else None)."""
    c, task = run.config, run.task
    step = int(driver.local(state.step))
    train_it = run.train_batches(step)
    progress = Progress(step, c.num_steps, task.examples_per_step, clock,
                        budget_minutes=c.get("train_minutes", 0))
    acc, n_acc, compiled, final = None, 0, set(), None
    try:
        while step < c.num_steps:
            n = _steps_in_call(step, driver.steps_per_call, c)
            batch = driver.put_batch(next_batches(train_it, n, stacked=driver.steps_per_call > 1))
            if n not in compiled:  # a call of another length is another executable
                _compile_step(driver, state, batch, clock, progress if not compiled else None)
                compiled.add(n)
            state, metrics = driver.step(state, batch)
            started()
            progress.advance(step + n)
            acc = metrics if acc is None else jax.tree.map(jnp.add, acc, metrics)
            n_acc, step = n_acc + n, step + n
            last = step == c.num_steps or _out_of_time(clock, c)
            if step % c.log_every == 0 or step % c.checkpoint_every == 0 or last:
                _log(acc, n_acc, step, state, run, driver, ckpt, progress, writer, clock)
                acc, n_acc = None, 0
            final = _outputs(run, driver, ckpt, state, step, last, writer, clock)
            if last and step < c.num_steps:
                info(f"Stopped at step {step} after {c.train_minutes:g} training minute(s) "
                     f"(config.train_minutes); running again continues from there.")
                break
    finally:
        progress.close()
        ckpt.wait()
    return state, final


def _finish(run: Setup, state: TrainState, workdir: str, writer: MetricWriter,
            clock: TrainClock, results: dict[str, float] | None = None) -> None:
    """Sample grids (also as ``<name>.png``), final evaluation (``results`` when it ran
    already) and the loss-curve plot.
    The pictures are written even when the evaluation fails; a non-finite final metric
    is flagged in ``metrics.jsonl`` and warned about. The final row is marked
    ``"final": true`` and supersedes an earlier final row of the same step
    (`genjax.record.supersede_final`); it is written even when the evaluation has no
    metrics (a GAN on data without a domain classifier), so that the run is finished."""
    step = int(state.step)
    with clock.phase("pictures"):
        grids = run.images(state)
        writer.images(step, grids)
        if jax.process_index() == 0:
            for name, imgs in grids.items():
                save_grid(os.path.join(workdir, f"{name}.png"), imgs)
    try:
        with clock.phase("evaluation"):
            results = run.evaluate(state, final=True) if results is None else results
        if jax.process_index() == 0:
            record.supersede_final(workdir, step)
        bad = writer.scalars(step, results, final=True)  # also with no metrics: it ends the run
    finally:
        if jax.process_index() == 0:
            plot_curves(writer.jsonl_path, os.path.join(workdir, "curves.png"))
    if jax.process_index() == 0:
        run.report(workdir, state, results)
    if bad:
        warn(f"non-finite final metric(s) {', '.join(bad)}: written as null and listed under "
             f"\"nonfinite\" in {writer.jsonl_path}.")


def _finished(run: Setup, probe: Checkpointer, workdir: str) -> TrainState | None:
    """The final state of ``workdir``'s run when it is finished with ``run.config`` (its
    newest checkpoint is at ``num_steps``, its final row is written and the config is
    the run's own), read without writing anything; None otherwise."""
    step = probe.latest_step()
    if step is None or step != run.config.num_steps or not record.final_row(workdir, step):
        return None
    try:
        new = record.plain(run.config)
        if record.changes(record.recorded(workdir, new), new):
            return None
        return probe.read(step, run.init_state())
    except Exception:  # noqa: BLE001  (a damaged record or step: the full start deals with it)
        return None


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> TrainState | None:
    """Train ``config.task`` for ``config.num_steps`` steps in ``workdir`` (or for
    ``config.train_minutes`` of this invocation), resuming if possible; a finished run
    with the same config is returned as it is.

    Returns:
      The final train state (one copy, on the first local device); the final evaluation
      metrics are in ``metrics.jsonl``. A population trained by workers
      (`genjax.workers`): its members' final states stacked, or None when they differ
      in structure.

    Raises:
      NonFiniteError: a loss, metric or state leaf became NaN/Inf (or, skipping such
        updates, more than ``config.max_skipped_fraction`` of a log window were).
      WorkdirInUseError: another live run holds the workdir.
      CheckpointMismatchError: the workdir's checkpoints belong to other networks.
      ResumeRefusedError: the config changes what the workdir's run means.
      CheckpointsUnreadableError: checkpoints existed and none is usable.
      DatasetUnavailableError: the dataset is missing and cannot be downloaded.
    """
    if population.is_population(config):
        config = workers.resolved(config, workdir)  # auto: as the workdir's population ran
        if config.population.strategy == "workers":
            return workers.train(config, workdir)
    clock = TrainClock()
    run = setup(config)
    check_writers(config)
    workdir = os.path.abspath(workdir)
    probe = Checkpointer(os.path.join(workdir, "checkpoints"), read_only=True)
    finished = _finished(run, probe, workdir)
    if finished is not None:
        info(f"The run in {workdir} is finished at step {int(finished.step)} with this config "
             f"(final metrics in {record.METRICS}); nothing to do. Raise --config.num_steps "
             f"to train on.")
        return finished
    if population.is_population(config):
        workers.check_layout(workdir, population.strategy(config))
    probe.check_compatible(jax.eval_shape(run.task.init, run.init_key))
    if probe.latest_step() is not None and not config.get("start_over", False):
        _check_resume(run, workdir)
    workdir = _prepare_workdir(workdir)
    with runlock.hold(workdir, enabled=jax.process_index() == 0):
        return _run(run, workdir, clock)


def _run(run: Setup, workdir: str, clock: TrainClock) -> TrainState:
    """`train_and_evaluate` once its checks passed and it holds the workdir."""
    config = run.config
    best = config.get("keep_best")
    with contextlib.ExitStack() as closing:  # closed however the run ends: a process that
        # goes on (a population worker's next member) keeps no writer or manager open
        ckpt = Checkpointer(os.path.join(workdir, "checkpoints"), every=config.checkpoint_every,
                            keep=config.keep_checkpoints, best=best and ranking.goodness(best))
        closing.callback(ckpt.close)
        driver = _compile(run)
        state, started = _start(run, driver, ckpt, workdir)
        writer = MetricWriter(workdir, png_dir=os.path.join(workdir, "samples"), config=config)
        closing.callback(writer.close)
        state, final = _train(run, driver, ckpt, state, writer, clock, started)
        started()  # a run with no steps left: its final evaluation starts now
        state = driver.local(state)
        _finish(run, state, workdir, writer, clock, final)
    info(clock.summary())
    info(f"Outputs in {workdir}")
    return state
