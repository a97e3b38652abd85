"""Kill-and-resume chaos: does a run killed R times end bitwise equal to one never killed?

  python -m benchmarks.chaos [--configs=sngan_mnist:test,vae_mnist:test] [--kills=10]
      [--steps=60] [--scenarios=kills,corrupt,evaluate,lock,diverge,population]
      [--out=benchmarks/results/chaos.json]

For each config, the experiment command (``python -m experiments.<task>``, checkpoints
every ``--every`` steps) runs straight to ``--steps`` in one workdir while, in a second
workdir, the same command is SIGKILLed ``--kills`` times and restarted after each kill.
Every kill waits for the run's first finished checkpoint, so every restart must resume
(``resumed_at`` lists one step per kill). Odd-numbered kills then wait for a checkpoint
write to be under way (orbax's temporary folder present) and land in it; the others land
at a random moment (0-0.5 s) after the process has logged 1 to 3 more times. Then the two final checkpoints are compared leaf by leaf,
bitwise: parameters, optimizer states, BatchNorm statistics, spectral-norm vectors, EMA,
rng and step. GAN configs run with an EMA of the generator (``ema_decay`` 0.99) so that
it is part of the comparison.

Data order is a pure function of (seed, step) (`genjax.data.train_iterator`), so a run
resumed at step s sees the batches an uninterrupted run sees from step s on; an equal
final state shows that as well.

Five more scenarios, each selected by its name in ``--scenarios``:

- **corrupt** (``--damage_config``) flips one bit in every kept checkpoint of a finished
  run and resumes it (it must stop with ``CheckpointsUnreadableError`` twice, history
  untouched, and start over only with ``--config.start_over=True``, ending bitwise equal
  to the original);
- **evaluate** (``--damage_config``) runs ``genjax-evaluate`` again and again on a
  run that checkpoints every step and keeps ``--live_keep`` (1: each write rotates the
  previous step away): every evaluation and the run must succeed, nothing set aside, and
  the run must end bitwise equal to an undisturbed one;
- **lock** (``--damage_config``) starts two launchers of one command on one workdir,
  first at the same moment, then the second once the first has checkpointed: one run
  must finish bitwise equal to an undisturbed one, with each step's metric row once and
  no temporary checkpoint folder left, and the other must exit 1 with the one-line
  ``WorkdirInUseError`` naming the holder's pid;
- **diverge** (``--diverge_config``) trains a GAN at learning rate 1e6, checkpointing
  every step: it must stop with ``NonFiniteError``, and every floating leaf of its newest
  checkpoint must be finite.
- **population** (``--damage_config``) runs the kills of the first scenario on a
  population of 2 seeds, under ``vmap`` (one checkpoint of both members) and under
  ``workers`` (a run per member; each kill hits the launcher, whose workers die with
  it): every member's final state must be bitwise the uninterrupted population's.

Every wait is bounded, and every process a scenario starts is killed when it ends,
however it ends. Each scenario's result replaces its own entry in ``--out``; the other
entries there are kept.
"""

from __future__ import annotations

import collections
import contextlib
import glob
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
from typing import Callable, Iterator

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags, logging  # noqa: E402

from benchmarks import machine  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def command(config: str, workdir: str, steps: int, every: int, data_dir: str | None, *,
            keep: int = 2, population: dict | None = None,
            overrides: dict | None = None) -> list[str]:
    """The experiment command of ``config`` (``name`` or ``name:variant``), the same every
    time: ``steps`` steps, a checkpoint (and a log row) every ``every``, ``keep`` kept;
    ``population``: the ``config.population`` fields of a population run; ``overrides``:
    more config fields, ones that do not change the state's tree (``parallel``)."""
    import importlib

    name, _, variant = config.partition(":")
    task = importlib.import_module(f"genjax.configs.{name}").get_config(variant).task
    cmd = [sys.executable, "-m", f"experiments.{task}",
           f"--config={config}",
           f"--workdir={workdir}", f"--config.num_steps={steps}",
           f"--config.checkpoint_every={every}", f"--config.log_every={every}",
           f"--config.sample_every={steps}", f"--config.keep_checkpoints={keep}"]
    if task == "gan":
        cmd.append("--config.ema_decay=0.99")
    if data_dir:
        cmd.append(f"--config.data_dir={data_dir}")
    cmd += [f"--config.population.{k}={v}" for k, v in (population or {}).items()]
    return cmd + [f"--config.{k}={v}" for k, v in (overrides or {}).items()]


_LIVE: list[subprocess.Popen] = []  # every process `_launch` started, for `_reaping`


def _launch(cmd: list[str], log: str, cache: str, errors: str | None = None
            ) -> subprocess.Popen:
    """Start ``cmd``, its output appended to ``log`` (its stderr to ``errors`` when given,
    to check what a user sees there); launches share XLA's persistent cache (``cache``)
    as users' reruns would."""
    env = {"JAX_COMPILATION_CACHE_DIR": cache, "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0.5",
           **os.environ}
    with open(log, "ab") as out, (open(errors, "ab") if errors else
                                  contextlib.nullcontext(subprocess.STDOUT)) as err:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=out, stderr=err, env=env)
    _LIVE.append(proc)
    return proc


@contextlib.contextmanager
def _reaping() -> Iterator[None]:
    """Kill (SIGKILL) and reap every process launched in the block that still runs when
    the block ends, however it ends (a timeout, a failed check): a scenario leaves no run
    behind. As a decorator, around each call of the function."""
    first = len(_LIVE)
    try:
        yield
    finally:
        for proc in _LIVE[first:]:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        del _LIVE[first:]


def _writing(workdir: str) -> bool:
    return bool(glob.glob(os.path.join(workdir, "checkpoints", "*.orbax-checkpoint-tmp*")))


def _latest(workdir: str) -> int | None:
    """The newest finished checkpoint's step (orbax renames a write's folder to its step)."""
    folder = os.path.join(workdir, "checkpoints")
    steps = [int(s) for s in os.listdir(folder) if s.isdigit()] if os.path.isdir(folder) else []
    return max(steps, default=None)


def _size(path: str) -> int:
    return os.path.getsize(path) if os.path.exists(path) else 0


def _wait_for(condition: Callable[[], bool], proc: subprocess.Popen, deadline: float,
              what: str) -> bool:
    """Poll ``condition`` every millisecond (a kill aimed at a write needs that) until it
    holds (True) or ``proc`` has ended (False).

    Raises:
      TimeoutError: neither by ``deadline`` (a `time.time`); ``what`` says what was awaited.
    """
    while not condition():
        if proc.poll() is not None:
            return False
        if time.time() > deadline:
            raise TimeoutError(f"gave up waiting for {what}")
        time.sleep(0.001)
    return True


def _kill_one(proc: subprocess.Popen, workdir: str, during_write: bool, rng: random.Random,
              timeout: float) -> dict | None:
    """Wait for the moment, SIGKILL, and describe the kill (None: the run ended first)."""
    metrics = os.path.join(workdir, "metrics.jsonl")
    deadline = time.time() + timeout
    wait_for = lambda condition: _wait_for(condition, proc, deadline,
                                           f"progress for {timeout:.0f} s in {workdir}")

    # Every kill comes after a finished checkpoint, so every restart has one to resume from
    # (a restart that starts over would then be the bug this benchmark looks for).
    if not wait_for(lambda: _latest(workdir) is not None):
        return None
    # Training is under way once this process appends to metrics.jsonl (every log step).
    for _ in range(1 if during_write else rng.randint(1, 3)):
        logged = _size(metrics)
        if not wait_for(lambda: _size(metrics) > logged):
            return None
    if during_write:
        if not wait_for(lambda: _writing(workdir)):
            return None
    else:
        time.sleep(rng.uniform(0.0, 0.5))
        if proc.poll() is not None:
            return None
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return {"aimed_at_write": during_write, "write_in_progress": _writing(workdir),
            "latest_checkpoint": _latest(workdir)}


def run_config(config: str, population: dict | None = None):
    """The config `command` runs (``population``: its population's seeds and strategy)."""
    import importlib

    name, _, variant = config.partition(":")
    c = importlib.import_module(f"genjax.configs.{name}").get_config(variant)
    if c.task == "gan":
        c.ema_decay = 0.99  # as `command` runs it
    c.population.update(population or {})  # seeds and strategy
    return c


def newest_state(config: str, workdir: str, population: dict | None = None):
    """The newest usable checkpoint of ``workdir`` (read-only, as the evaluator reads it),
    restored into the state tree of the config `command` runs; None if there is none."""
    return newest_state_of(run_config(config, population), workdir)


def newest_state_of(c, workdir: str):
    """`newest_state` of the config object ``c`` (a population's: its stacked state)."""
    import jax

    from genjax import population, rng
    from genjax.checkpoint import Checkpointer
    from genjax.tasks import TASKS

    if population.is_population(c):
        members = population.roster(c)
        tasks = [TASKS[c.task](population.member_config(c, m), (28, 28, 1)) for m in members]
        init = lambda: population.stack(  # noqa: E731
            [t.init(rng.stream(m.seed, "init")) for t, m in zip(tasks, members)], members)
    else:
        init = lambda: TASKS[c.task](c, (28, 28, 1)).init(rng.stream(c.seed, "init"))  # noqa: E731
    return Checkpointer(os.path.join(workdir, "checkpoints"), read_only=True).restore(
        jax.eval_shape(init))


def final_state(config: str, workdir: str, steps: int, population: dict | None = None):
    """The final checkpoint (step ``steps``) of ``workdir``, in the config's state tree."""
    return final_state_of(run_config(config, population), workdir, steps)


def final_state_of(c, workdir: str, steps: int):
    """`final_state` of the config object ``c``."""
    state = newest_state_of(c, workdir)
    if state is None or int(state.step) != steps:
        raise RuntimeError(f"{workdir} has no checkpoint of step {steps}.")
    return state


def final_states(config: str, workdir: str, steps: int, population: dict | None = None) -> list:
    """The final checkpoints of ``workdir``'s run: one, or under the ``workers`` strategy
    one per member (each member's run in its own folder, in its own config's tree)."""
    from genjax import population as members
    from genjax import workers

    c = run_config(config, population)
    if not workers.has_members(workdir):
        return [final_state_of(c, workdir, steps)]
    return [final_state_of(members.member_config(c, m), workers.member_dir(workdir, m.index),
                           steps) for m in members.roster(c)]


def _host_leaves(tree) -> list[tuple[str, "np.ndarray"]]:
    """(path, host array) of every leaf of ``tree``; typed rng keys as their key data."""
    import jax
    import numpy as np

    def raw(x):
        if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
            x = jax.random.key_data(x)
        return np.asarray(x)

    return [(jax.tree_util.keystr(path), raw(x))
            for path, x in jax.tree_util.tree_flatten_with_path(tree)[0]]


def differing_leaves(a, b) -> list[str]:
    """Paths of the leaves where ``a`` and ``b`` differ in any bit (typed keys by key data)."""
    return [path for (path, x), (_, y) in zip(_host_leaves(a), _host_leaves(b))
            if x.tobytes() != y.tobytes() or x.shape != y.shape]


def floating_leaves(tree) -> dict[str, bool]:
    """Every floating leaf of ``tree`` by path: whether all its values are finite."""
    import numpy as np

    return {path: bool(np.isfinite(x).all()) for path, x in _host_leaves(tree)
            if np.issubdtype(x.dtype, np.inexact)}


@_reaping()
def chaos(config: str, *, kills: int, steps: int, every: int, seed: int, root: str,
          data_dir: str | None = None, timeout: float = 300.0,
          population: dict | None = None, overrides: dict | None = None) -> dict:
    """One config's straight run, its killed-and-restarted run, and their comparison;
    ``population``: of a population (seeds, strategy) of the config; ``overrides``: as
    `command`'s, for both runs. Under ``workers``
    the kills hit the launcher, whose workers die with it, and are timed by member 0's run."""
    rng = random.Random(seed)
    straight, killed = os.path.join(root, "straight"), os.path.join(root, "killed")
    log, cache = os.path.join(root, "log.txt"), os.path.join(root, "xla_cache")
    watched = os.path.join(killed, "members", "m0") if (population or {}).get(
        "strategy") == "workers" else killed
    start = time.time()
    # The uninterrupted run goes alongside the killed one (one core each on a 2-core CPU).
    reference = _launch(command(config, straight, steps, every, data_dir, population=population,
                                overrides=overrides), os.path.join(root, "straight_log.txt"), cache)
    cmd = command(config, killed, steps, every, data_dir, population=population,
                  overrides=overrides)
    done, launches = [], 0
    while True:
        proc, launches = _launch(cmd, log, cache), launches + 1
        if len(done) == kills:
            break
        kill = _kill_one(proc, watched, len(done) % 2 == 1, rng, timeout)
        if kill is None:  # finished before the moment came: nothing left to interrupt
            break
        done.append(kill)
    for p, name in ((proc, "final restart"), (reference, "uninterrupted run")):
        if p.wait(timeout) != 0:
            raise RuntimeError(f"{name} failed; see the logs in {root}")
    resumed = [int(s) for s in re.findall(r"Resumed from .* at step (\d+)", open(log).read())]
    diff = [f"m{i}{path}" if population else path for i, (a, b) in enumerate(zip(
        final_states(config, straight, steps, population),
        final_states(config, killed, steps, population), strict=True))
        for path in differing_leaves(a, b)]
    return {"config": config, **({"population": population} if population else {}),
            "steps": steps, "checkpoint_every": every, "kills": len(done),
            "kills_during_a_write": sum(k["write_in_progress"] for k in done),
            "launches": launches, "resumed_at": resumed, "identical": not diff,
            "differing_leaves": diff, "wall_s": round(time.time() - start, 1), "kill_log": done}


def _lines(path: str, start: int = 0) -> list[str]:
    """The non-empty lines of ``path`` from byte ``start`` on (none if it does not exist)."""
    if not os.path.exists(path):
        return []
    with open(path, errors="replace") as f:
        f.seek(start)
        return [line.strip() for line in f if line.strip()]


def _run(cmd: list[str], log: str, cache: str, timeout: float) -> tuple[int, str]:
    """Run ``cmd`` to the end: (exit status, its last non-empty output line)."""
    start = _size(log)
    code = _launch(cmd, log, cache).wait(timeout)
    lines = _lines(log, start)
    return code, lines[-1] if lines else ""


def _flip_a_bit(step_dir: str) -> str:
    """Flip one bit in the middle of the step's largest data file (which still decodes:
    only the checksum can tell); returns the file."""
    path = max(glob.glob(os.path.join(step_dir, "default", "**", "d", "*"), recursive=True),
               key=os.path.getsize)
    with open(path, "r+b") as f:
        f.seek(os.path.getsize(path) // 2)
        byte = f.read(1)[0]
        f.seek(-1, 1)
        f.write(bytes([byte ^ 1]))
    return path


@_reaping()
def corrupt_every_checkpoint(config: str, *, steps: int, every: int, root: str,
                             data_dir: str | None = None, timeout: float = 300.0) -> dict:
    """A finished run whose every kept checkpoint has one flipped bit, resumed for
    ``every`` more steps: it must stop (twice: the same command again does not restart
    either) without touching its history, then start over only when asked, and end
    bitwise equal to the original run."""
    workdir, log, cache = (os.path.join(root, n) for n in ("corrupt", "corrupt_log.txt", "xla_cache"))
    start = time.time()
    cmd = command(config, workdir, steps, every, data_dir)
    if _run(cmd, log, cache, timeout)[0] != 0:
        raise RuntimeError(f"the first run failed; see {log}")
    original = final_state(config, workdir, steps)
    history = open(os.path.join(workdir, "metrics.jsonl")).read()
    kept = sorted(int(s) for s in os.listdir(os.path.join(workdir, "checkpoints")) if s.isdigit())
    for step in kept:
        _flip_a_bit(os.path.join(workdir, "checkpoints", str(step)))
    longer = command(config, workdir, steps + every, every, data_dir)
    first, second = _run(longer, log, cache, timeout), _run(longer, log, cache, timeout)
    history_kept = open(os.path.join(workdir, "metrics.jsonl")).read() == history
    over = _run(cmd + ["--config.start_over=True"], log, cache, timeout)
    identical = over[0] == 0 and not differing_leaves(original, final_state(config, workdir, steps))
    return {"scenario": "corrupt every kept checkpoint", "config": config, "steps": steps,
            "checkpoints_damaged": kept, "first_resume": {"exit": first[0], "last_line": first[1]},
            "same_command_again": {"exit": second[0], "last_line": second[1]},
            "history_unchanged": history_kept,
            "set_aside": len(os.listdir(os.path.join(workdir, "corrupt_checkpoints"))),
            "start_over_exit": over[0], "start_over_identical": identical,
            "ok": first[0] == second[0] == 1 and "CheckpointsUnreadableError" in first[1]
                  and history_kept and identical,
            "wall_s": round(time.time() - start, 1)}


@_reaping()
def evaluate_while_training(config: str, *, steps: int, keep: int, root: str,
                            data_dir: str | None = None, timeout: float = 600.0) -> dict:
    """A run checkpointing every step and keeping ``keep`` steps (1: each write deletes
    the step before it, the fastest rotation a run can have) while `genjax-evaluate`
    scores its workdir again and again, back to back: every evaluation and the run must
    succeed, nothing may be set aside, and the run must end bitwise equal to an
    undisturbed run of the same command (alongside, in another workdir). ``timeout``
    bounds the whole scenario."""
    workdir, undisturbed, cache = (os.path.join(root, n)
                                   for n in ("live", "undisturbed", "xla_cache"))
    log, eval_log = os.path.join(root, "live_log.txt"), os.path.join(root, "eval_log.txt")
    start = time.time()
    deadline = start + timeout
    reference = _launch(command(config, undisturbed, steps, 1, data_dir, keep=keep),
                        os.path.join(root, "undisturbed_log.txt"), cache)
    trainer = _launch(command(config, workdir, steps, 1, data_dir, keep=keep), log, cache)
    if not _wait_for(lambda: _latest(workdir) is not None, trainer, deadline,
                     f"the first checkpoint in {workdir}"):
        raise RuntimeError(f"the run ended before its first checkpoint; see {log}")
    evaluations = []
    while trainer.poll() is None:
        if time.time() > deadline:
            raise TimeoutError(f"the run in {workdir} did not end in {timeout:.0f} s")
        # At --verbosity=0 the evaluator logs each step rotated away while it read it.
        began, offset = time.time(), _size(eval_log)
        code, line = _run([sys.executable, "-m", "experiments.evaluate", f"--workdir={workdir}",
                           "--num_samples=100", "--verbosity=0"], eval_log, cache,
                          deadline - time.time())
        vanished = sum("vanished while being read" in x for x in _lines(eval_log, offset))
        evaluations.append({"exit": code, "during_training": trainer.poll() is None,
                            "steps_vanished_while_read": vanished,
                            "wall_s": round(time.time() - began, 1),
                            **({} if code == 0 else {"last_line": line})})
    trained = trainer.wait() == 0 and reference.wait(max(deadline - time.time(), 1)) == 0
    diff = differing_leaves(final_state(config, undisturbed, steps),
                            final_state(config, workdir, steps)) if trained else None
    overlapped = [e for e in evaluations if e["during_training"]]
    set_aside = os.path.exists(os.path.join(workdir, "corrupt_checkpoints"))
    return {"scenario": "evaluate while training", "config": config, "steps": steps,
            "checkpoint_every": 1, "keep_checkpoints": keep,
            "evaluations_during_training": len(overlapped),
            "evaluations_failed": sum(e["exit"] != 0 for e in evaluations),
            "steps_vanished_while_read": sum(e["steps_vanished_while_read"] for e in evaluations),
            "trainer_exit_ok": trained, "anything_set_aside": set_aside,
            "identical": diff == [], "differing_leaves": diff,
            "ok": trained and bool(overlapped) and not set_aside and diff == []
                  and all(e["exit"] == 0 for e in evaluations),
            "evaluations": evaluations, "wall_s": round(time.time() - start, 1)}


LOCK_MESSAGE = re.compile(r"error: WorkdirInUseError: (?P<workdir>\S+) is in use by pid "
                          r"(?P<pid>\d+) on host \S+ since .+ \(it holds run\.lock\); ")


def repeated_rows(workdir: str) -> list[int]:
    """The steps whose training row appears more than once in ``metrics.jsonl`` (two
    writers on one workdir would write each step twice)."""
    rows = map(json.loads, _lines(os.path.join(workdir, "metrics.jsonl")))
    counts = collections.Counter(r["step"] for r in rows if any(k.startswith("train/") for k in r))
    return sorted(step for step, n in counts.items() if n > 1)


def _lock_outcome(config: str, workdir: str, steps: int, reference, holder: subprocess.Popen,
                  refused: subprocess.Popen, refused_errors: str) -> dict:
    """Two ended launchers on ``workdir``: the run that held it (exit 0, final state bitwise
    ``reference``'s, each step's training row once, no temporary checkpoint folder left)
    and the one refused (exit 1, its stderr one line: the lock message naming the
    holder's pid)."""
    stderr = _lines(refused_errors)
    named = LOCK_MESSAGE.match(stderr[0]) if len(stderr) == 1 else None
    out = {"holder_exit": holder.returncode, "refused_exit": refused.returncode,
           "refused_stderr": stderr,
           "lock_message": bool(named) and named["workdir"] == workdir
                           and int(named["pid"]) == holder.pid}
    if holder.returncode == 0:
        out.update(identical=not differing_leaves(reference, final_state(config, workdir, steps)),
                   repeated_rows=repeated_rows(workdir), temporary_folder_left=_writing(workdir))
    out["ok"] = (out["holder_exit"] == 0 and out["refused_exit"] == 1 and out["lock_message"]
                 and out.get("identical", False) and not out.get("repeated_rows", [0])
                 and not out.get("temporary_folder_left", True))
    return out


@_reaping()
def two_launchers(config: str, *, steps: int, every: int, root: str, data_dir: str | None = None,
                  timeout: float = 300.0) -> dict:
    """Two launchers of one command on one workdir: started at the same moment, and the
    second started once the first has written its first checkpoint. Each time one run
    must hold the workdir and end as an undisturbed run of the command (alongside, in a
    third workdir) ends, and the other must be refused at once with the lock message
    (`_lock_outcome`); the second launcher mid-run must end while the first still runs."""
    cache, path = os.path.join(root, "xla_cache"), lambda name: os.path.join(root, name)
    start = time.time()

    def launch(workdir: str, name: str) -> subprocess.Popen:
        return _launch(command(config, path(workdir), steps, every, data_dir),
                       path(f"{name}_log.txt"), cache, errors=path(f"{name}_stderr.txt"))

    reference = launch("undisturbed", "undisturbed")
    pair = [launch("together", f"together{i}") for i in (0, 1)]
    exits = [p.wait(timeout) for p in pair]
    if reference.wait(timeout) != 0:
        raise RuntimeError(f"the undisturbed run failed; see {path('undisturbed_log.txt')}")
    undisturbed = final_state(config, path("undisturbed"), steps)
    held = exits.index(0) if 0 in exits else 0
    together = {"exits": exits, **_lock_outcome(
        config, path("together"), steps, undisturbed, pair[held], pair[1 - held],
        path(f"together{1 - held}_stderr.txt"))}

    first = launch("mid_run", "first")
    if not _wait_for(lambda: _latest(path("mid_run")) is not None, first, time.time() + timeout,
                     "the first run's first checkpoint"):
        raise RuntimeError(f"the first run ended before its first checkpoint; see "
                           f"{path('first_log.txt')}")
    at = _latest(path("mid_run"))
    second = launch("mid_run", "second")
    second.wait(timeout)
    running = first.poll() is None
    first.wait(timeout)
    mid_run = {"second_started_after_step": at, "first_running_when_second_ended": running,
               **_lock_outcome(config, path("mid_run"), steps, undisturbed, first, second,
                               path("second_stderr.txt"))}
    mid_run["ok"] = mid_run["ok"] and running
    return {"scenario": "two launchers on one workdir", "config": config, "steps": steps,
            "checkpoint_every": every, "started_together": together, "second_mid_run": mid_run,
            "ok": together["ok"] and mid_run["ok"], "wall_s": round(time.time() - start, 1)}


DIVERGE = ("--config.g_learning_rate=1e6", "--config.d_learning_rate=1e6")


@_reaping()
def diverging_gan(config: str, *, steps: int, root: str, data_dir: str | None = None,
                  timeout: float = 300.0) -> dict:
    """A GAN trained at learning rate 1e6 (`DIVERGE`), checkpointing every step so that a
    write is due right when the state goes non-finite: it must stop with a
    ``NonFiniteError`` line, and every floating leaf of its newest checkpoint (read as the
    evaluator reads it) must be finite: a non-finite state is never written."""
    workdir, log, cache = (os.path.join(root, n)
                           for n in ("diverge", "diverge_log.txt", "xla_cache"))
    start = time.time()
    code, line = _run(command(config, workdir, steps, 1, data_dir) + list(DIVERGE), log, cache,
                      timeout)
    state = newest_state(config, workdir)
    leaves = floating_leaves(state) if state is not None else {}
    nonfinite = [path for path, finite in leaves.items() if not finite]
    return {"scenario": "diverging GAN", "config": config, "flags": list(DIVERGE),
            "steps": steps, "checkpoint_every": 1, "exit": code, "error_line": line,
            "newest_step": None if state is None else int(state.step),
            "floating_leaves_checked": len(leaves), "nonfinite_leaves": nonfinite,
            "newest_finite": state is not None and not nonfinite,
            "ok": code != 0 and line.startswith("error: NonFiniteError: ") and state is not None
                  and not nonfinite,
            "wall_s": round(time.time() - start, 1)}


def merge(previous: dict, key: str, value: dict | list, here: str) -> dict:
    """The result file ``previous`` with ``value`` as its ``key`` entry: a scenario's new
    result replaces only its own. Entries measured on another machine than the file's
    (its top-level ``machine``, ``here`` for a new file) name their own."""
    out = {"machine": here, **previous}
    if out["machine"] != here:
        value = ([dict(v, machine=here) for v in value] if isinstance(value, list)
                 else dict(value, machine=here))
    return {**out, key: value}


def _failed(value: dict | list) -> list[str]:
    """The failures in one scenario's result (the kills: a list of configs)."""
    if isinstance(value, list):
        return [r["config"] for r in value if not r["identical"]]
    return [] if value["ok"] else [value["scenario"]]


def _in_fresh_root(run: Callable[[str], dict]) -> dict:
    """``run(root)`` in a temporary folder, deleted afterwards."""
    with tempfile.TemporaryDirectory() as root:
        return run(root)


def _print(result: dict) -> None:
    """One line of a result, without its per-kill and per-evaluation lists."""
    print(json.dumps({k: v for k, v in result.items() if k not in ("kill_log", "evaluations")}),
          flush=True)


def scenarios(f) -> dict[str, tuple[str, Callable[[], dict | list]]]:
    """Each scenario's name in ``--scenarios`` -> (its key in the result file, a run of it
    with the flags ``f``)."""
    fresh = lambda function, config, **kw: lambda: _in_fresh_root(
        lambda root: function(config, root=root, data_dir=f.data_dir, **kw))
    kills = lambda: [fresh(chaos, c, kills=f.kills, steps=f.steps, every=f.every, seed=f.seed)()
                     for c in f.configs]
    return {
        "kills": ("results", kills),
        "corrupt": ("corrupt_every_checkpoint",
                    fresh(corrupt_every_checkpoint, f.damage_config, steps=f.steps, every=f.every)),
        "evaluate": ("evaluate_while_training",
                     fresh(evaluate_while_training, f.damage_config, steps=f.live_steps,
                           keep=f.live_keep)),
        "lock": ("two_launchers",
                 fresh(two_launchers, f.damage_config, steps=f.lock_steps, every=f.every)),
        "diverge": ("diverging_gan", fresh(diverging_gan, f.diverge_config, steps=f.steps)),
        "population": ("populations", lambda: [
            fresh(chaos, f.damage_config, kills=f.kills, steps=f.steps, every=f.every,
                  seed=f.seed, population={"seeds": 2, "strategy": strategy})()
            for strategy in ("vmap", "workers")]),
    }


def main(_):
    logging.set_verbosity(logging.WARNING)  # orbax logs every read at INFO
    f, here = flags.FLAGS, machine.describe()
    runs = scenarios(f)
    unknown = [name for name in f.scenarios if name not in runs]
    if unknown:
        raise app.UsageError(f"Unknown scenario(s) {', '.join(unknown)}; valid: {', '.join(runs)}.")
    failed = []
    for name in f.scenarios:
        key, run = runs[name]
        value = run()
        for result in value if isinstance(value, list) else [value]:
            _print(result)
        previous = json.load(open(f.out)) if os.path.exists(f.out) else {}
        with open(f.out, "w") as fh:  # after each scenario: a later failure keeps this one
            json.dump(merge(previous, key, value, here), fh, indent=2)
        failed += _failed(value)
    if failed:
        sys.exit(f"Failed: {', '.join(failed)}.")


if __name__ == "__main__":  # flags defined here: tests import `chaos` next to other flag owners
    flags.DEFINE_list("configs", ["sngan_mnist:test", "vae_mnist:test"],
                      "Configs (file name in genjax/configs, optional :variant).")
    flags.DEFINE_integer("kills", 10, "SIGKILLs per config.")
    flags.DEFINE_integer("steps", 60, "Train steps of each run (kills, corrupt, diverge).")
    flags.DEFINE_integer("every", 4, "Checkpoint (and log) every this many steps.")
    flags.DEFINE_integer("seed", 0, "Seed of the kill schedule.")
    flags.DEFINE_string("data_dir", None, "tfds data_dir (default: tfds's own).")
    flags.DEFINE_list("scenarios", ["kills", "corrupt", "evaluate", "lock", "diverge",
                                    "population"],
                      "kills: SIGKILL and resume; corrupt: a bit flipped in every kept "
                      "checkpoint; evaluate: the evaluator scoring a live run; lock: two "
                      "launchers on one workdir; diverge: a GAN whose state goes non-finite; "
                      "population: kills of a 2-seed population (vmap, workers).")
    flags.DEFINE_string("damage_config", "vae_mnist:test", "Config of the corrupt, evaluate "
                        "and lock scenarios.")
    flags.DEFINE_string("diverge_config", "dcgan_mnist:test", "GAN config of the diverge "
                        "scenario.")
    flags.DEFINE_integer("live_steps", 800, "Steps of the run the evaluator scores (one "
                         "checkpoint per step): long enough for several evaluations.")
    flags.DEFINE_integer("lock_steps", 300, "Steps of the lock scenario's runs: long enough "
                         "that a second launcher meets the first still running.")
    flags.DEFINE_integer("live_keep", 1, "Checkpoints the evaluate scenario's run keeps (1: "
                         "each write deletes the previous step).")
    flags.DEFINE_string("out", os.path.join(ROOT, "benchmarks", "results", "chaos.json"),
                        "Result file; each scenario run replaces its own entry there.")
    app.run(main)
