"""Kill-and-resume chaos: does a run killed R times end bitwise equal to one never killed?

  python -m benchmarks.chaos [--configs=sngan_mnist:test,vae_mnist:test] [--kills=10]
      [--steps=60] [--out=benchmarks/results/chaos.json]

For each config, the experiment command (``python -m experiments.<task>``, checkpoints
every ``--every`` steps) runs straight to ``--steps`` in one workdir while, in a second
workdir, the same command is SIGKILLed ``--kills`` times and restarted after each kill.
Odd-numbered kills wait for a checkpoint write to be under way (orbax's temporary folder
present) and land in it; the others land at a random moment (0-0.5 s) after the process
has logged 1 to 3 times. Then the two final checkpoints are compared leaf by leaf,
bitwise: parameters, optimizer states, BatchNorm statistics, spectral-norm vectors, EMA,
rng and step. GAN configs run with an EMA of the generator (``ema_decay`` 0.99) so that
it is part of the comparison.

Data order is a pure function of (seed, step) (`genjax.data.train_iterator`), so a run
resumed at step s sees the batches an uninterrupted run sees from step s on; an equal
final state shows that as well. Writes ``--out``.
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

from absl import app, flags  # noqa: E402

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
    steps = [int(s) for s in os.listdir(os.path.join(workdir, "checkpoints")) if s.isdigit()]
    return {"aimed_at_write": during_write, "write_in_progress": _writing(workdir),
            "latest_checkpoint": max(steps, default=None)}


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
    state = Checkpointer(os.path.join(workdir, "checkpoints"), every=1).restore(template)
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


def main(_):
    f, results = flags.FLAGS, []
    for config in f.configs:
        with tempfile.TemporaryDirectory() as root:
            r = chaos(config, kills=f.kills, steps=f.steps, every=f.every, seed=f.seed, root=root,
                      data_dir=f.data_dir)
        print(json.dumps({k: v for k, v in r.items() if k != "kill_log"}), flush=True)
        results.append(r)
    with open(f.out, "w") as fh:
        json.dump({"results": results}, fh, indent=2)
    if not all(r["identical"] for r in results):
        sys.exit("Final states differ after kills.")


if __name__ == "__main__":  # flags defined here: tests import `chaos` next to other flag owners
    flags.DEFINE_list("configs", ["sngan_mnist:test", "vae_mnist:test"],
                      "Configs (file name in experiments/configs, optional :variant).")
    flags.DEFINE_integer("kills", 10, "SIGKILLs per config.")
    flags.DEFINE_integer("steps", 60, "Train steps of each run.")
    flags.DEFINE_integer("every", 4, "Checkpoint (and log) every this many steps.")
    flags.DEFINE_integer("seed", 0, "Seed of the kill schedule.")
    flags.DEFINE_string("data_dir", None, "tfds data_dir (default: tfds's own).")
    flags.DEFINE_string("out", os.path.join(ROOT, "benchmarks", "results", "chaos.json"),
                        "Result file.")
    app.run(main)
