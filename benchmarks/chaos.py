"""Kill-and-resume chaos: does a run killed R times end bitwise equal to one never killed?

  python -m benchmarks.chaos [--configs=sngan_mnist:test,vae_mnist:test] [--kills=10]
      [--steps=60] [--scenarios=kills,corrupt,evaluate] [--out=benchmarks/results/chaos.json]

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

Two damage scenarios run on ``--damage_config``: **corrupt** flips one bit in every kept
checkpoint of a finished run and resumes it (it must stop with
``CheckpointsUnreadableError`` twice, history untouched, and start over only with
``--config.start_over=True``, ending bitwise equal to the original); **evaluate** runs
``experiments.evaluate`` again and again on a run that checkpoints every step (every
evaluation and the run must succeed, nothing set aside). Writes ``--out``.
"""

from __future__ import annotations

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

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags, logging  # noqa: E402

from benchmarks import machine  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def command(config: str, workdir: str, steps: int, every: int, data_dir: str | None
            ) -> list[str]:
    """The experiment command of ``config`` (``name`` or ``name:variant``), the same every time."""
    import importlib

    name, _, variant = config.partition(":")
    task = importlib.import_module(f"experiments.configs.{name}").get_config(variant).task
    cmd = [sys.executable, "-m", f"experiments.{task}",
           f"--config=experiments/configs/{name}.py{':' + variant if variant else ''}",
           f"--workdir={workdir}", f"--config.num_steps={steps}",
           f"--config.checkpoint_every={every}", f"--config.log_every={every}",
           f"--config.sample_every={steps}", "--config.keep_checkpoints=2"]
    if task == "gan":
        cmd.append("--config.ema_decay=0.99")
    if data_dir:
        cmd.append(f"--config.data_dir={data_dir}")
    return cmd


def _launch(cmd: list[str], log: str, cache: str) -> subprocess.Popen:
    """Start ``cmd``; launches share XLA's persistent cache (``cache``) as users' reruns would."""
    env = {"JAX_COMPILATION_CACHE_DIR": cache, "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0.5",
           **os.environ}
    return subprocess.Popen(cmd, cwd=ROOT, stdout=open(log, "ab"), stderr=subprocess.STDOUT,
                            env=env)


def _writing(workdir: str) -> bool:
    return bool(glob.glob(os.path.join(workdir, "checkpoints", "*.orbax-checkpoint-tmp*")))


def _latest(workdir: str) -> int | None:
    """The newest finished checkpoint's step (orbax renames a write's folder to its step)."""
    folder = os.path.join(workdir, "checkpoints")
    steps = [int(s) for s in os.listdir(folder) if s.isdigit()] if os.path.isdir(folder) else []
    return max(steps, default=None)


def _size(path: str) -> int:
    return os.path.getsize(path) if os.path.exists(path) else 0


def _kill_one(proc: subprocess.Popen, workdir: str, during_write: bool, rng: random.Random,
              timeout: float) -> dict | None:
    """Wait for the moment, SIGKILL, and describe the kill (None: the run ended first)."""
    metrics = os.path.join(workdir, "metrics.jsonl")
    deadline = time.time() + timeout

    def wait_for(condition) -> bool:
        while not condition():
            if proc.poll() is not None:
                return False
            if time.time() > deadline:
                raise TimeoutError(f"no progress in {timeout:.0f} s in {workdir}")
            time.sleep(0.001)
        return True

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


def final_state(config: str, workdir: str, steps: int):
    """The final checkpoint of ``workdir``, restored into the config's state tree."""
    import importlib

    import jax

    from genjax import rng
    from genjax.checkpoint import Checkpointer
    from genjax.tasks import TASKS

    name, _, variant = config.partition(":")
    c = importlib.import_module(f"experiments.configs.{name}").get_config(variant)
    if c.task == "gan":
        c.ema_decay = 0.99  # as `command` runs it
    template = jax.eval_shape(TASKS[c.task](c, (28, 28, 1)).init, rng.stream(c.seed, "init"))
    state = Checkpointer(os.path.join(workdir, "checkpoints"), read_only=True).restore(template)
    if state is None or int(state.step) != steps:
        raise RuntimeError(f"{workdir} has no checkpoint of step {steps}.")
    return state


def differing_leaves(a, b) -> list[str]:
    """Paths of the leaves where ``a`` and ``b`` differ in any bit (typed keys by key data)."""
    import jax
    import numpy as np

    def raw(x):
        if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
            x = jax.random.key_data(x)
        return np.asarray(x)

    flat_a, flat_b = (jax.tree_util.tree_flatten_with_path(t)[0] for t in (a, b))
    return [jax.tree_util.keystr(pa) for (pa, x), (_, y) in zip(flat_a, flat_b)
            if raw(x).tobytes() != raw(y).tobytes() or raw(x).shape != raw(y).shape]


def chaos(config: str, *, kills: int, steps: int, every: int, seed: int, root: str,
          data_dir: str | None = None, timeout: float = 300.0) -> dict:
    """One config's straight run, its killed-and-restarted run, and their comparison."""
    rng = random.Random(seed)
    straight, killed = os.path.join(root, "straight"), os.path.join(root, "killed")
    log, cache = os.path.join(root, "log.txt"), os.path.join(root, "xla_cache")
    start = time.time()
    # The uninterrupted run goes alongside the killed one (one core each on a 2-core CPU).
    reference = _launch(command(config, straight, steps, every, data_dir),
                        os.path.join(root, "straight_log.txt"), cache)
    cmd, done, launches = command(config, killed, steps, every, data_dir), [], 0
    while True:
        proc, launches = _launch(cmd, log, cache), launches + 1
        if len(done) == kills:
            break
        kill = _kill_one(proc, killed, len(done) % 2 == 1, rng, timeout)
        if kill is None:  # finished before the moment came: nothing left to interrupt
            break
        done.append(kill)
    for p, name in ((proc, "final restart"), (reference, "uninterrupted run")):
        if p.wait(timeout) != 0:
            raise RuntimeError(f"{name} failed; see the logs in {root}")
    resumed = [int(s) for s in re.findall(r"Resumed from .* at step (\d+)", open(log).read())]
    diff = differing_leaves(final_state(config, straight, steps),
                            final_state(config, killed, steps))
    return {"config": config, "steps": steps, "checkpoint_every": every, "kills": len(done),
            "kills_during_a_write": sum(k["write_in_progress"] for k in done),
            "launches": launches, "resumed_at": resumed, "identical": not diff,
            "differing_leaves": diff, "wall_s": round(time.time() - start, 1), "kill_log": done}


def _run(cmd: list[str], log: str, cache: str, timeout: float) -> tuple[int, str]:
    """Run ``cmd`` to the end: (exit status, its last non-empty output line)."""
    start = _size(log)
    code = _launch(cmd, log, cache).wait(timeout)
    with open(log, errors="replace") as f:
        f.seek(start)
        lines = [line.strip() for line in f if line.strip()]
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


def evaluate_while_training(config: str, *, steps: int, root: str, data_dir: str | None = None,
                            timeout: float = 300.0) -> dict:
    """A run checkpointing every step (keeping 2) while `experiments.evaluate` scores its
    workdir again and again: every evaluation and the run must succeed, and nothing may
    be set aside."""
    workdir, cache = os.path.join(root, "live"), os.path.join(root, "xla_cache")
    log, eval_log = os.path.join(root, "live_log.txt"), os.path.join(root, "eval_log.txt")
    start = time.time()
    trainer = _launch(command(config, workdir, steps, 1, data_dir), log, cache)
    while not glob.glob(os.path.join(workdir, "checkpoints", "[0-9]*")):
        if trainer.poll() is not None or time.time() - start > timeout:
            raise RuntimeError(f"the run ended before its first checkpoint; see {log}")
        time.sleep(0.05)
    evaluations = []
    while trainer.poll() is None:
        code, line = _run([sys.executable, "-m", "experiments.evaluate", f"--workdir={workdir}",
                           "--num_samples=100"], eval_log, cache, timeout)
        evaluations.append({"exit": code, "during_training": trainer.poll() is None,
                            **({} if code == 0 else {"last_line": line})})
    trained = trainer.wait() == 0
    overlapped = [e for e in evaluations if e["during_training"]]
    set_aside = os.path.exists(os.path.join(workdir, "corrupt_checkpoints"))
    return {"scenario": "evaluate while training", "config": config, "steps": steps,
            "checkpoint_every": 1, "evaluations_during_training": len(overlapped),
            "evaluations_failed": sum(e["exit"] != 0 for e in evaluations),
            "trainer_exit_ok": trained, "anything_set_aside": set_aside,
            "ok": trained and bool(overlapped) and not set_aside
                  and all(e["exit"] == 0 for e in evaluations),
            "evaluations": evaluations, "wall_s": round(time.time() - start, 1)}


def main(_):
    logging.set_verbosity(logging.WARNING)  # orbax logs every read at INFO
    f, out = flags.FLAGS, {"machine": machine.describe()}
    if "kills" in f.scenarios:
        out["results"] = []
        for config in f.configs:
            with tempfile.TemporaryDirectory() as root:
                r = chaos(config, kills=f.kills, steps=f.steps, every=f.every, seed=f.seed,
                          root=root, data_dir=f.data_dir)
            print(json.dumps({k: v for k, v in r.items() if k != "kill_log"}), flush=True)
            out["results"].append(r)
    if "corrupt" in f.scenarios:
        with tempfile.TemporaryDirectory() as root:
            out["corrupt_every_checkpoint"] = corrupt_every_checkpoint(
                f.damage_config, steps=f.steps, every=f.every, root=root, data_dir=f.data_dir)
        print(json.dumps(out["corrupt_every_checkpoint"]), flush=True)
    if "evaluate" in f.scenarios:
        with tempfile.TemporaryDirectory() as root:
            out["evaluate_while_training"] = evaluate_while_training(
                f.damage_config, steps=f.live_steps, root=root, data_dir=f.data_dir)
        print(json.dumps({k: v for k, v in out["evaluate_while_training"].items()
                          if k != "evaluations"}), flush=True)
    with open(f.out, "w") as fh:
        json.dump(out, fh, indent=2)
    failed = [r["config"] for r in out.get("results", []) if not r["identical"]] + [
        out[k]["scenario"] for k in ("corrupt_every_checkpoint", "evaluate_while_training")
        if k in out and not out[k]["ok"]]
    if failed:
        sys.exit(f"Failed: {', '.join(failed)}.")


if __name__ == "__main__":  # flags defined here: tests import `chaos` next to other flag owners
    flags.DEFINE_list("configs", ["sngan_mnist:test", "vae_mnist:test"],
                      "Configs (file name in experiments/configs, optional :variant).")
    flags.DEFINE_integer("kills", 10, "SIGKILLs per config.")
    flags.DEFINE_integer("steps", 60, "Train steps of each run.")
    flags.DEFINE_integer("every", 4, "Checkpoint (and log) every this many steps.")
    flags.DEFINE_integer("seed", 0, "Seed of the kill schedule.")
    flags.DEFINE_string("data_dir", None, "tfds data_dir (default: tfds's own).")
    flags.DEFINE_list("scenarios", ["kills", "corrupt", "evaluate"],
                      "kills: SIGKILL and resume; corrupt: a bit flipped in every kept "
                      "checkpoint; evaluate: the evaluator scoring a live run.")
    flags.DEFINE_string("damage_config", "vae_mnist:test", "Config of the corrupt and "
                        "evaluate scenarios.")
    flags.DEFINE_integer("live_steps", 300, "Steps of the run the evaluator scores (one "
                         "checkpoint per step).")
    flags.DEFINE_string("out", os.path.join(ROOT, "benchmarks", "results", "chaos.json"),
                        "Result file.")
    app.run(main)
