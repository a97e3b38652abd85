"""The ``workers`` population strategy: the members as runs of their own, in one
single-threaded process per core.

On a CPU a population's members run fastest as separate programs: vmapped, a
convolution becomes a grouped one and the members share the cores' threads, while one
single-threaded process per core, pinned to it, runs that core's share at full speed
(docs/benchmarks.md, populations). Member i trains in ``<workdir>/members/m<i>`` as the
run of its own config (`genjax.population.member_config`) trains, through
`genjax.loop.train_and_evaluate` in a worker process (`genjax.cli.member`): its state,
metrics and pictures are bitwise that run's made the same way (one process on one core;
XLA:CPU sizes its thread pools, and splits its sums, by the cores a process may use), and
it can be loaded, evaluated or resumed as one. A worker trains its members (i, i + W,
i + 2W, ... of W workers) one after another.

The coordinator (`train`, in the launching process) holds the population's lock and
records its config, which the workers read, starts them, and, once all have ended, writes
``population.json`` and the overview grid from the members' own records. Workers die
with their coordinator (a kill of the launcher leaves no orphan training); a relaunch
resumes each unfinished member from its own checkpoint and passes over the finished
ones. A member that diverges (`genjax.loop.NonFiniteError`) keeps its last good
checkpoint, is recorded as frozen (``diverged.json``, the step it was seen at) and is
not trained again; its worker goes on to its next member.
"""

from __future__ import annotations

import contextlib
import glob
import io
import json
import os
import subprocess
import sys
from typing import Iterator, Sequence

import jax
import ml_collections
import numpy as np
from PIL import Image

from genjax import assembly, population, record, runlock
from genjax.checkpoint import Checkpointer
from genjax.report import info
from genjax.state import TrainState
from genjax.tasks import RESUMABLE

MEMBERS = "members"          # <workdir>/members/m<i>: member i's own run
DIVERGED = "diverged.json"   # <member dir>/diverged.json: {"step", "kept", "message"}, frozen
WORKER_XLA_FLAGS = "--xla_cpu_multi_thread_eigen=false"  # one thread per worker: one core each


class WorkerFailedError(RuntimeError):
    """A worker process ended with an error (its own output says which)."""


def member_dir(workdir: str, i: int) -> str:
    """Where member ``i`` of the population in ``workdir`` runs as a run of its own."""
    return os.path.join(workdir, MEMBERS, f"m{i}")


def has_members(workdir: str) -> bool:
    """Whether ``workdir`` holds a population trained by workers: a member's run started
    there (recorded its config)."""
    return bool(glob.glob(os.path.join(workdir, MEMBERS, "m*", record.CONFIG)))


def cores() -> list[int]:
    """The CPU cores this process may run on (one worker each)."""
    return sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else \
        list(range(os.cpu_count() or 1))


def shares(k: int, n: int) -> list[list[int]]:
    """Members 0..k-1 dealt to ``min(k, n)`` workers in turn: worker j trains j, j + W, ..."""
    w = min(k, n)
    return [list(range(j, k, w)) for j in range(w)]


def resolved(config: ml_collections.ConfigDict, workdir: str) -> ml_collections.ConfigDict:
    """``config`` with ``population.strategy='auto'`` made concrete: the way the
    population in ``workdir`` was trained, if it holds one, else `population.strategy`
    (``workers`` on CPU, ``vmap`` on an accelerator)."""
    if config.population.get("strategy", "auto") != "auto":
        return config
    stacked = Checkpointer(os.path.join(workdir, "checkpoints"), read_only=True).latest_step()
    if has_members(workdir):
        chosen = "workers"
    elif stacked is not None:
        chosen = "vmap"
    else:
        chosen = population.strategy(config)
    config = config.copy_and_resolve_references()
    config.population.strategy = chosen
    return config


def check_layout(workdir: str, strategy: str) -> None:
    """Refuse to train a workdir's population under a strategy that keeps it otherwise:
    ``workers`` keeps a run per member, ``vmap``/``map`` one stacked checkpoint."""
    stacked = Checkpointer(os.path.join(workdir, "checkpoints"), read_only=True).latest_step()
    if strategy == "workers" and stacked is not None:
        raise population.PopulationError(
            f"{workdir} holds a population trained as one program (one checkpoint of every "
            f"member); resume it with config.population.strategy='vmap' or 'map', or train "
            f"strategy='workers' in another --workdir.")
    if strategy != "workers" and has_members(workdir):
        raise population.PopulationError(
            f"{workdir} holds a population trained by workers (a run per member in "
            f"{MEMBERS}/); resume it with config.population.strategy='workers', or train "
            f"strategy={strategy!r} in another --workdir.")


def record_divergence(directory: str, step: int | None, message: str) -> None:
    """Mark the member run in ``directory`` frozen: it diverged at ``step`` (``kept``: the
    step of the last good checkpoint it keeps)."""
    kept = Checkpointer(os.path.join(directory, "checkpoints"), read_only=True).latest_step()
    with record.atomic_file(os.path.join(directory, DIVERGED)) as f:
        json.dump({"step": step, "kept": kept, "message": message}, f)


def divergence(directory: str) -> dict | None:
    """The member's `record_divergence` entry (None: it did not diverge)."""
    path = os.path.join(directory, DIVERGED)
    return record.read_json(path) if os.path.exists(path) else None


@contextlib.contextmanager
def prefixed(prefix: str) -> Iterator[None]:
    """Every line this process prints in the block (stdout and stderr) starts with
    ``prefix``, so that the workers' interleaved lines say whose they are."""
    with contextlib.redirect_stdout(_Prefixed(sys.stdout, prefix)), \
            contextlib.redirect_stderr(_Prefixed(sys.stderr, prefix)):
        yield


class _Prefixed(io.TextIOBase):
    """A text stream that writes ``prefix`` at the start of every line to ``out``."""

    def __init__(self, out, prefix: str):
        self.out, self.prefix, self.fresh = out, prefix, True

    def write(self, text: str) -> int:
        pieces = []
        for line in text.splitlines(keepends=True):
            pieces.append(self.prefix + line if self.fresh else line)
            self.fresh = line.endswith("\n")
        self.out.write("".join(pieces))
        return len(text)

    def flush(self) -> None:
        self.out.flush()


_CORE = "GENJAX_WORKER_CORE"  # a worker's environment: the core it is pinned to


def worker_env(core: int | None) -> dict[str, str]:
    """This process's environment for a worker on ``core``: XLA and TensorFlow
    single-threaded, and what `settle` reads."""
    return runlock.child_env({
        **os.environ, "XLA_FLAGS": f"{os.environ.get('XLA_FLAGS', '')} {WORKER_XLA_FLAGS}",
        "TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "1",
        _CORE: "" if core is None else str(core)})


def settle() -> None:
    """A worker's first act (`worker_env` gave it its core and parent): pin itself to its
    core and ask to die with its parent, or end at once if the parent is gone already.
    Done here, not between fork and exec: the parent is multithreaded by then."""
    core = os.environ.get(_CORE)
    if core and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {int(core)})
    runlock.die_with_parent()


def _start(workdir: str, members: Sequence[int], core: int | None) -> subprocess.Popen:
    """A worker process training ``members`` of ``workdir``'s population on ``core``."""
    command = [sys.executable, "-m", "genjax.cli.member", workdir, *map(str, members)]
    return subprocess.Popen(command, env=worker_env(core))


def train(config: ml_collections.ConfigDict, workdir: str) -> TrainState | None:
    """Train the population ``config`` in ``workdir`` with one worker per core (see the
    module docstring); returns the members' final states stacked as one population state
    (`genjax.population.stack`, diverged members marked in ``frozen_at``), or None when
    the members' states differ in structure.

    Raises:
      PopulationError: the population is refused, or ``workdir`` holds a stacked one.
      ResumeRefusedError: the population's recorded config differs in a field that may
        not change.
      WorkerFailedError: a worker ended with an error (the others' members are kept).
    """
    population.check(config)
    roster = population.roster(config)
    if jax.default_backend() != "cpu":
        raise population.PopulationError(
            "config.population.strategy='workers' runs one process per CPU core; on "
            f"{jax.default_backend()} use 'vmap' (one program for every member).")
    setups = [population.member_setup(config, m) for m in roster]  # refused values, here
    workdir = os.path.abspath(workdir)
    check_layout(workdir, "workers")
    os.makedirs(workdir, exist_ok=True)
    with runlock.hold(workdir):
        _record(config, workdir, roster)
        slots = cores()
        info(f"Population of {len(roster)} members (workers: {min(len(roster), len(slots))} "
             f"single-threaded processes, one per core): "
             + "; ".join(m.label for m in roster[:8]) + ("; ..." if len(roster) > 8 else "") + ".")
        _run_workers(workdir, [(share, slots[j] if len(slots) > 1 else None)
                               for j, share in enumerate(shares(len(roster), len(slots)))])
        return _conclude(config, workdir, roster, setups)


def _run_workers(workdir: str, plan: Sequence[tuple[list[int], int | None]]) -> None:
    """Start a worker for each (members, core) of ``plan`` and wait for all; however this
    ends (an interrupt too), none is left running.

    Raises:
      WorkerFailedError: some ended with an error.
    """
    procs = []
    try:
        procs = [(_start(workdir, share, core), share) for share, core in plan]
        failed = [share for proc, share in procs if proc.wait() != 0]
    finally:
        for proc, _ in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    if failed:
        names = ", ".join(f"m{i}" for share in failed for i in share)
        raise WorkerFailedError(
            f"a population worker ended with an error (it trains {names}); its output "
            f"above says why. Every member's checkpoints are kept: launch the same command "
            f"again to resume the unfinished ones.")


def _record(config: ml_collections.ConfigDict, workdir: str,
            roster: Sequence[population.Member]) -> None:
    """Record the population's config (a resume's changes checked against it), which the
    workers read."""
    started = max(Checkpointer(os.path.join(member_dir(workdir, m.index), "checkpoints"),
                               read_only=True).latest_step() or 0 for m in roster)
    if started and os.path.exists(os.path.join(workdir, record.CONFIG)):
        record.check_resumable(workdir, config, RESUMABLE.get(config.task, ()))
    record.record_start(workdir, config, started)
    os.makedirs(os.path.join(workdir, MEMBERS), exist_ok=True)


def worker_config(workdir: str) -> ml_collections.ConfigDict:
    """The population config its coordinator recorded (`genjax.record.run_config`)."""
    return record.run_config(workdir)


def _conclude(config: ml_collections.ConfigDict, workdir: str,
              roster: Sequence[population.Member], setups: Sequence[assembly.Setup]
              ) -> TrainState | None:
    """``population.json``, the overview grid and the stacked final states."""
    finals, frozen_at, states = [], [], []
    for m, s in zip(roster, setups):
        directory = member_dir(workdir, m.index)
        finals.append(record.final_metrics(directory))
        diverged = divergence(directory)
        frozen_at.append(population.ALIVE if diverged is None else int(diverged["step"] or 0))
        template = jax.eval_shape(s.task.init, s.init_key)
        states.append(Checkpointer(os.path.join(directory, "checkpoints"),
                                   read_only=True).restore(template))
    result = population.summary(roster, finals, frozen_at, config.population.get("rank_by", "auto"))
    with record.atomic_file(os.path.join(workdir, population.SUMMARY)) as f:
        json.dump(result, f, indent=1)
    for line in population.summary_lines(result):
        info(line)
    _overview(workdir, roster, setups[0].image_shape)
    info(f"Every member's final metrics in {os.path.join(workdir, population.SUMMARY)}; each "
         f"member is a run of its own in {os.path.join(workdir, MEMBERS)}/m<i>.")
    return _stacked([st if st is not None else s.init_state() for st, s in zip(states, setups)],
                    roster, frozen_at)


def _stacked(states: Sequence[TrainState], roster: Sequence[population.Member],
             frozen_at: Sequence[int]) -> TrainState | None:
    """The members' final states as one population state (the newest step, ``frozen_at``
    as recorded); None when their states differ in structure, as members trained apart
    may (one with an EMA copy, one without)."""
    shapes = [jax.tree.map(np.shape, st) for st in states]
    if any(jax.tree.structure(st) != jax.tree.structure(states[0]) for st in states) or \
            any(sh != shapes[0] for sh in shapes):
        return None
    stacked = population.stack(states, roster)
    extra = {**stacked.extra, population.KEY: {**stacked.extra[population.KEY],
                                               "frozen_at": np.asarray(frozen_at, np.int32)}}
    return stacked.replace(step=max(int(st.step) for st in states), extra=extra)


def _overview(workdir: str, roster: Sequence[population.Member], image_shape: tuple[int, ...],
              scale: int = 2, columns: int = 8) -> None:
    """``population.png``: the first row (up to ``columns`` images) of each member's final
    ``samples.png``, one member a row, as the one-program strategies draw it."""
    rows = []
    h, w = image_shape[0] + 1, image_shape[1] + 1  # a tile and its separator
    for m in roster:
        path = os.path.join(member_dir(workdir, m.index), "samples.png")
        if os.path.exists(path):
            with Image.open(path) as image:
                grid = np.asarray(image)
            width = min(columns * w + 1, grid.shape[1] // scale)
            rows.append(grid[:(h + 1) * scale, :width * scale])
        else:
            rows.append(None)  # a member with no final grid (it diverged): a blank row
    drawn = [r for r in rows if r is not None]
    if not drawn or any(r.shape != drawn[0].shape for r in drawn):
        return
    rows = [np.full_like(drawn[0], 255) if r is None else r for r in rows]
    Image.fromarray(np.concatenate([r[:-scale] for r in rows[:-1]] + rows[-1:])).save(
        os.path.join(workdir, f"{population.OVERVIEW}.png"))
