"""The mode-collapse benchmark: GAN variants on 2-D mixtures of Gaussians.

  python -m benchmarks.modes                      # the docs/results.md table: about 11 min on 2 CPU cores
  python -m benchmarks.modes --seeds=1 --steps=1000 --methods=gan,unrolled_5   # a quick look
  python -m benchmarks.modes --step_times --out=benchmarks/results/modes_step_times.json

Datasets (`genjax.data.mixtures`, read through the usual tfds pipeline): ``ring8`` (8
Gaussians on a circle of radius 2, std 0.02) and ``grid25`` (5x5 grid, spacing 2, std
0.05). Every method trains the same networks (`genjax.tasks.gan`, ``points``: the
unrolled-GAN paper's 2x128 ReLU generator with a linear output and 1x128 ReLU
discriminator on inputs scaled by 1/4, latent 256) with the same optimizer, batch and
number of generator updates; then 2,500 samples are scored with
`genjax.metrics.modes.mode_metrics` (modes covered: >= 1% of the samples within 3 std
of the mode; high quality: share of samples within 3 std of some mode; modes reached:
>= 1% of the samples nearest to the mode, at any distance). Results are
averaged over ``--seeds``; numbers go to ``--out`` and scatter plots of the first seed
next to it (``modes_<dataset>.png``).

Methods: non-saturating GAN; unrolled GAN with 5 and 10 unrolled discriminator steps;
WGAN-GP (5 critic updates per generator update, lambda 0.1 as in the WGAN-GP authors'
toy-data code); minibatch discrimination (20 kernels of dimension 5: cost grows with
kernels x batch^2); LSGAN; PacGAN (Lin et al. 2018) with packs of 2 and of 4: the
discriminator scores the step's samples m at a time (the same samples per step as every
other method, so batch / m critic inputs). Normalizing flows for comparison
(`genjax/configs/flow_ring2d.py`): 8 x (ActNorm, coupling with a 2x128 ReLU MLP),
affine or rational-quadratic spline couplings (16 bins), trained by maximum likelihood
with the same optimizer, batch and number of updates, the learning rate decayed to 0 by
a cosine.

  python -m benchmarks.modes --methods=flow_affine,flow_spline --out=benchmarks/results/modes_flows/modes.json
"""

import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from benchmarks import machine  # noqa: E402
from absl import app, flags  # noqa: E402

METHODS = {
    "gan": {},
    "unrolled_5": {"unroll_steps": 5},
    "unrolled_10": {"unroll_steps": 10},
    "wgan_gp": {"loss": "wgan", "gp_weight": 0.1, "n_critic": 5},
    "minibatch_disc": {"minibatch": "discrimination", "minibatch_kernels": (20, 5)},
    "lsgan": {"loss": "lsgan"},
    "pacgan_2": {"pack": 2},
    "pacgan_4": {"pack": 4},
}
# Normalizing flows beside the GANs (`genjax/configs/flow_ring2d.py`: 8 x (ActNorm,
# coupling with a 2 x 128 ReLU MLP), maximum likelihood, the same batch and step count,
# the learning rate decayed to 0 by a cosine over the run).
FLOWS = {"flow_affine": {"coupling": "affine"}, "flow_spline": {"coupling": "spline"}}
DATASETS = ("ring8", "grid25")
RESULTS = os.path.join(os.path.dirname(__file__), "results")

_METHODS = flags.DEFINE_list("methods", list(METHODS) + list(FLOWS), "Methods to compare.")
_DATASETS = flags.DEFINE_list("datasets", list(DATASETS), "Mixtures: ring8, grid25.")
_SEEDS = flags.DEFINE_integer("seeds", 3, "Seeds per method and dataset.")
_STEPS = flags.DEFINE_integer("steps", 5000, "Generator updates per run.")
_BATCH = flags.DEFINE_integer("batch_size", 128, "Batch size (real points per D update).")
_LR = flags.DEFINE_float("learning_rate", 1e-3, "Adam learning rate of both networks.")
_SAMPLES = flags.DEFINE_integer("samples", 2500, "Samples scored per run.")
_STEPS_PER_CALL = flags.DEFINE_integer("steps_per_call", 50, "Train steps per compiled call.")
_DATA_DIR = flags.DEFINE_string("data_dir", None, "tfds data directory.")
_WORKERS = flags.DEFINE_integer("workers", 2, "Runs in parallel processes (the small steps "
                                "use about one core each).")
_STEP_TIMES = flags.DEFINE_bool("step_times", False, "Only time each method's train step "
                                 "(ms/step, best of 5 calls) and write --out.")
_OUT = flags.DEFINE_string("out", os.path.join(RESULTS, "modes.json"), "Result file.")


def config_for(dataset: str, method: str, seed: int):
    """The shared 2-D GAN config with ``method``'s changes, or the 2-D flow's."""
    from genjax.configs import flow_ring2d, gan_mlp_mnist

    if method in FLOWS:
        c = flow_ring2d.get_config()
        c.dataset, c.data_dir, c.seed = f"gaussian_mixtures/{dataset}", _DATA_DIR.value, seed
        c.batch_size, c.learning_rate, c.eval_batch_size = _BATCH.value, _LR.value, 500
        c.update(FLOWS[method])
        return c
    c = gan_mlp_mnist.get_config()
    c.dataset, c.data_dir, c.preprocess = f"gaussian_mixtures/{dataset}", _DATA_DIR.value, "raw"
    c.generator = c.discriminator = "points"
    c.latent_dim, c.batch_size, c.seed = 256, _BATCH.value, seed
    c.g_learning_rate = c.d_learning_rate = _LR.value
    c.eval_batch_size = 500
    c.update(METHODS[method])
    return c


def run(job: tuple[str, str, int, dict]) -> tuple[dict, "np.ndarray"]:
    """Train one method on one mixture; (metrics, samples). ``job`` is (dataset, method,
    seed, flag values), so that it runs in a fresh worker process."""
    dataset, method, seed, flag_values = job
    if not flags.FLAGS.is_parsed():
        flags.FLAGS(["modes"] + [f"--{k}={v}" for k, v in flag_values.items() if v is not None])
    import jax
    import numpy as np

    from genjax import data as gdata
    from genjax import loop, parallel, rng
    from genjax.data import mixtures
    from genjax.metrics.modes import mode_metrics
    from genjax.tasks import TASKS

    c = config_for(dataset, method, seed)
    task = TASKS[c.task](c, (2,))
    k = _STEPS_PER_CALL.value
    if _STEPS.value % k:
        raise ValueError(f"--steps must be a multiple of --steps_per_call ({k}).")
    driver = parallel.make_driver("none", task.train_step, donate=True, steps_per_call=k)
    start = time.perf_counter()
    spec = loop.data_specs(c)[0]
    state = driver.place(loop.data_initialized(task, jax.jit(task.init)(rng.stream(seed, "init")),
                                               spec, task.examples_per_step))
    batches = gdata.train_iterator(spec, "train", global_batch_size=task.examples_per_step)
    for _ in range(_STEPS.value // k):
        state, metrics = driver.step(state, driver.put_batch(loop.next_batches(batches, k, True)))
    state = driver.local(state)
    samples = np.concatenate(list(task.sample(state, rng.stream(seed, "eval_samples"), _SAMPLES.value)))
    result = mode_metrics(samples, mixtures.centers(dataset), mixtures.STDS[dataset])
    result.update(dataset=dataset, method=method, seed=seed,
                  seconds=round(time.perf_counter() - start, 1),
                  final_losses={k_: float(v) / k for k_, v in jax.device_get(metrics).items()})
    return result, samples


def step_times(methods: list[str]) -> dict[str, float]:
    """Milliseconds per train step of each method on random ``ring8``-shaped batches,
    ``--steps_per_call`` steps per compiled call, best of 5 calls after compilation."""
    import jax

    from genjax import parallel
    from genjax.tasks import TASKS

    k, times = _STEPS_PER_CALL.value, {}
    for method in methods:
        c = config_for("ring8", method, 0)
        task = TASKS[c.task](c, (2,))
        driver = parallel.make_driver("none", task.train_step, donate=True, steps_per_call=k)
        state = driver.place(jax.jit(task.init)(jax.random.key(0)))
        n = task.examples_per_step
        batch = driver.put_batch({"image": np.random.randn(k, n, 2).astype(np.float32),
                                  "label": np.zeros((k, n), np.int32)})
        best = float("inf")
        for _ in range(6):  # the first call compiles
            start = time.perf_counter()
            state, metrics = driver.step(state, batch)
            jax.block_until_ready(metrics)
            best = min(best, (time.perf_counter() - start) / k)
        times[method] = round(best * 1e3, 2)
        print(f"{method}: {times[method]} ms/step", flush=True)
    return times


def plot(dataset: str, samples: dict, path: str) -> None:
    """One scatter plot per method (first seed), the modes' means marked."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from genjax.data import mixtures

    mu = mixtures.centers(dataset)
    lim = np.abs(mu).max() + 1.5
    fig, axes = plt.subplots(1, len(samples), figsize=(3 * len(samples), 3.2))
    for ax, (method, pts) in zip(np.atleast_1d(axes), samples.items()):
        ax.scatter(pts[:, 0], pts[:, 1], s=2, alpha=0.3, color="tab:blue")
        ax.scatter(mu[:, 0], mu[:, 1], s=30, marker="x", color="tab:red")
        ax.set(xlim=(-lim, lim), ylim=(-lim, lim), title=method, xticks=[], yticks=[])
        ax.set_aspect("equal")
    fig.suptitle(f"{dataset}: 2,500 samples per method (seed 0)")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def _cost(method: str) -> int:
    """Rough relative cost of a method's step, for scheduling."""
    return {"minibatch_disc": 5, "unrolled_10": 5, "wgan_gp": 4, "unrolled_5": 3,
            "flow_spline": 4, "flow_affine": 3}.get(method, 2)


def summarize(results: list[dict]) -> list[dict]:
    """Mean and std over seeds per (dataset, method)."""
    rows = []
    for dataset in dict.fromkeys(r["dataset"] for r in results):
        for method in dict.fromkeys(r["method"] for r in results):
            rs = [r for r in results if r["dataset"] == dataset and r["method"] == method]
            if rs:
                rows.append({"dataset": dataset, "method": method, "seeds": len(rs), **{
                    f"{m}_{s}": float(f([r[m] for r in rs]))
                    for m in ("modes_covered", "high_quality", "modes_reached") for s, f in
                    (("mean", np.mean), ("std", np.std))}})
    return rows


def main(_):
    import jax

    unknown = set(_METHODS.value) - set(METHODS) - set(FLOWS) or set(_DATASETS.value) - set(DATASETS)
    if unknown:
        raise app.UsageError(f"Unknown methods/datasets {sorted(unknown)}; valid: "
                             f"{', '.join([*METHODS, *FLOWS])}; {', '.join(DATASETS)}.")
    if _STEP_TIMES.value:
        with open(_OUT.value, "w") as f:
            json.dump({"machine": machine.describe(),
                       "cpu_count": os.cpu_count(), "jax": jax.__version__,
                       "batch_size": _BATCH.value, "steps_per_call": _STEPS_PER_CALL.value,
                       "ms_per_step": step_times(_METHODS.value)}, f, indent=2)
        return
    import multiprocessing

    from genjax import data as gdata

    start, results = time.perf_counter(), []
    for dataset in _DATASETS.value:  # prepared here: workers preparing it at once would race
        gdata.get_builder(gdata.DataSpec(f"gaussian_mixtures/{dataset}", data_dir=_DATA_DIR.value,
                                         preprocess="raw"))
    values = {f.name: f.value for f in (_STEPS, _BATCH, _LR, _SAMPLES, _STEPS_PER_CALL, _DATA_DIR)}
    jobs = [(d, m, s, values) for d in _DATASETS.value for m in _METHODS.value
            for s in range(_SEEDS.value)]
    # Longest first (unrolling, minibatch discrimination), so the workers finish together.
    order = sorted(range(len(jobs)), key=lambda i: -_cost(jobs[i][1]))
    with multiprocessing.get_context("spawn").Pool(_WORKERS.value) as pool:
        done = dict(zip(order, pool.imap(run, [jobs[i] for i in order])))
    first = {}
    for i, (r, samples) in sorted(done.items()):
        print(json.dumps(r), flush=True)
        results.append(r)
        first.setdefault(r["dataset"], {}).setdefault(r["method"], samples)
    for dataset, samples in first.items():
        plot(dataset, samples, os.path.join(os.path.dirname(_OUT.value), f"modes_{dataset}.png"))
    summary = summarize(results)
    for row in summary:
        print(json.dumps(row))
    with open(_OUT.value, "w") as f:
        json.dump({"machine": machine.describe(),
                   "cpu_count": os.cpu_count(), "jax": jax.__version__,
                   "device": str(jax.devices()[0]), "steps": _STEPS.value,
                   "batch_size": _BATCH.value, "learning_rate": _LR.value,
                   "samples": _SAMPLES.value, "total_seconds": round(time.perf_counter() - start),
                   "summary": summary, "runs": results}, f, indent=2)


if __name__ == "__main__":
    import numpy as np

    app.run(main)
else:
    import numpy as np
