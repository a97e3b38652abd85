"""Throughput of the compiled train steps, in real examples per second.

  python -m benchmarks.train_steps [--configs=gan_mlp_mnist,dcgan_mnist] [--seconds=20]
  XLA_FLAGS=--xla_force_host_platform_device_count=4 python -m benchmarks.train_steps \
      --parallel=none,pmap,mesh --out=benchmarks/results/drivers.json

For each config: build its task at the config's batch size (or at each of
``--batch_sizes``), compile the step (the compile time is reported), run warm-up steps, then time ``--windows`` windows of
``--seconds`` each on a fixed batch and report the median (examples/s counts real
images consumed: batch * n_critic for GANs) under each data-parallel driver of
``--parallel`` (`genjax.parallel`; the state buffers are donated), running each of
``--steps_per_call`` steps per compiled call. The data pipeline is
excluded (see ``benchmarks.input_pipeline``: it is far faster). The device's peak memory
is reported where the backend tracks it (GPU, not XLA:CPU); JAX cannot reset it, so it is
the peak of the whole process up to that row. Writes ``--out``.
"""

import json
import os
import platform
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402

_CONFIGS = flags.DEFINE_list("configs", ["vae_mnist", "gan_mlp_mnist", "dcgan_mnist",
                                         "lsgan_mnist", "wgan_gp_mnist"], "Configs to time.")
_SECONDS = flags.DEFINE_float("seconds", 20.0, "Length of one timing window.")
_PARALLEL = flags.DEFINE_list("parallel", ["none"], "Data-parallel drivers to time.")
_BATCH_SIZES = flags.DEFINE_list("batch_sizes", [], "Global batch sizes to time (empty: each "
                                 "config's own).")
_STEPS_PER_CALL = flags.DEFINE_list("steps_per_call", ["1"], "Train steps per compiled call "
                                     "(lax.scan over stacked batches) to time.")
_WINDOWS = flags.DEFINE_integer("windows", 3, "Timing windows (the median is reported).")
_OUT = flags.DEFINE_string("out", os.path.join(os.path.dirname(__file__), "results",
                                               "train_steps.json"), "Result file.")


def measure(name: str, driver: str, seconds: float, windows: int,
            batch_size: int | None = None, steps_per_call: int = 1) -> dict:
    import importlib

    import jax
    import numpy as np

    from genjax import parallel
    from genjax.tasks import TASKS

    config = importlib.import_module(f"experiments.configs.{name}").get_config()
    config.parallel = driver
    if batch_size:
        config.batch_size = batch_size
    parallel.check_batch(driver, config.batch_size)
    shape = (28, 28, 1)
    task = TASKS[config.task](config, shape)
    d = parallel.make_driver(driver, task.train_step, donate=True, steps_per_call=steps_per_call)
    state = d.place(jax.jit(task.init)(jax.random.key(0)))
    batch = {"image": np.random.default_rng(0).uniform(
        -1 if config.preprocess == "symmetric" else 0, 1,
        (task.examples_per_step, *shape)).astype(np.float32),
        "label": np.zeros(task.examples_per_step, np.int32)}
    if steps_per_call > 1:
        batch = {k: np.stack([v] * steps_per_call) for k, v in batch.items()}
    batch = d.put_batch(batch)
    examples_per_call = task.examples_per_step * steps_per_call
    step = d.step
    start = time.perf_counter()
    state, _ = step(state, batch)
    jax.block_until_ready(state)
    compile_s = time.perf_counter() - start
    for _ in range(3):
        state, _ = step(state, batch)
    jax.block_until_ready(state)
    rates = []
    for _ in range(windows):
        n, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            state, _ = step(state, batch)
            n += 1
        jax.block_until_ready(state)
        rates.append(n * examples_per_call / (time.perf_counter() - start))
    rate = float(np.median(rates))
    memory = (jax.devices()[0].memory_stats() or {}).get("peak_bytes_in_use")
    return {"config": name, "parallel": driver, "devices": d.num_devices,
            "batch_size": config.batch_size, "n_critic": config.get("n_critic", 1),
            "steps_per_call": steps_per_call,
            "examples_per_sec": round(rate, 1),
            "ms_per_step": round(1000 * task.examples_per_step / rate, 1),
            "first_call_s": round(compile_s, 1), "windows": [round(r, 1) for r in rates],
            "process_peak_memory_mb": None if memory is None else round(memory / 2**20, 1)}


def main(_):
    import jax

    results = []
    for name in _CONFIGS.value:
        for driver in _PARALLEL.value:
            for batch_size in [int(b) for b in _BATCH_SIZES.value] or [None]:
                for k in map(int, _STEPS_PER_CALL.value):
                    r = measure(name, driver, _SECONDS.value, _WINDOWS.value, batch_size, k)
                    print(json.dumps(r), flush=True)
                    results.append(r)
    with open(_OUT.value, "w") as f:
        json.dump({"machine": platform.processor() or platform.machine(),
                   "cpu_count": os.cpu_count(), "jax": jax.__version__,
                   "device": str(jax.devices()[0]), "results": results}, f, indent=2)


if __name__ == "__main__":
    app.run(main)
