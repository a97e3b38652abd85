"""What a run is made of, before any state exists (`Setup`), and how its states are scored.

`setup(config)` checks a config and builds its task, data specs and fixed test batch; a
`Setup` gives the run's fresh state, its training batches and its evaluation (the
family's own metrics plus, for generators, the domain metrics of `score_samples`). The
loop (`genjax.loop`) trains whatever a `Setup` describes: one model here, or a population
of them (`genjax.population`, a `Setup` whose methods serve every member).
"""

from __future__ import annotations

import dataclasses
from typing import Iterable, Iterator

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.experimental import multihost_utils

from genjax import data as gdata
from genjax import parallel, rng
from genjax.metrics.evaluation import Extractor
from genjax.report import info
from genjax.state import TrainState
from genjax.steps import StepFn
from genjax.tasks import TASKS, Task
from genjax.tasks.common import (check_config, collect_images, domain_extractor_for,
                                 sample_metrics)


def data_specs(config: ml_collections.ConfigDict) -> tuple[gdata.DataSpec, gdata.DataSpec]:
    """(train, eval) data specs; evaluation uses ``eval_preprocess`` if set."""
    common = gdata.spec_fields(config)
    return (gdata.DataSpec(preprocess=config.preprocess, source=config.get("data_source", "auto"),
                           **common),
            gdata.DataSpec(preprocess=config.get("eval_preprocess") or config.preprocess, **common))


def score_samples(fake: Iterable[np.ndarray], num: int, config: ml_collections.ConfigDict,
                  eval_spec: gdata.DataSpec, extractor: Extractor,
                  prefix: str = "test/domain_", scored: list | None = None) -> dict[str, float]:
    """FID/IS/KID/precision/recall/coverage of ``num`` samples, given as batches [b, H, W, C]
    in [0, 1], against as many test images (all of them if the split is smaller; then
    only that many samples count), with ``extractor`` (`domain_extractor_for` finds the
    domain classifier of the data). ``scored``: a list that receives the batches that
    counted, for other checks of the same samples."""
    n = min(num, gdata.num_examples(eval_spec, "test"))
    fake = _first(fake, n, scored)
    real = lambda: collect_images(gdata.eval_iterator(
        eval_spec, "test", global_batch_size=config.eval_batch_size), n, eval_spec.preprocess)
    key = f"{gdata.dataset_id(eval_spec)}-test-{eval_spec.preprocess}-{n}"
    return sample_metrics(fake, real, key, extractor, prefix)


def _first(batches: Iterable[np.ndarray], n: int, kept: list | None = None
           ) -> Iterator[np.ndarray]:
    """The batches cut to their first ``n`` rows in all, each also appended to ``kept``."""
    for b in batches:
        if n <= 0:
            return
        if kept is not None:
            kept.append(b[:n])
        yield b[:n]
        n -= len(b)


def evaluate(task: Task, state: TrainState, config: ml_collections.ConfigDict,
             eval_spec: gdata.DataSpec, image_shape: tuple[int, ...], final: bool = False
             ) -> dict[str, float]:
    """The task's own test metrics (with its ``final_evaluate`` ones when ``final``) plus,
    for generative tasks on data with a domain classifier (`domain_extractor_for`),
    `score_samples` of ``config.eval_samples`` samples (the same noise every time)."""
    test = lambda: gdata.eval_iterator(eval_spec, "test", global_batch_size=config.eval_batch_size)  # noqa: E731
    results = task.evaluate(state, test())
    if final and task.final_evaluate is not None:
        results.update(task.final_evaluate(state, test()))
    extractor = None if task.sample is None else domain_extractor_for(config, image_shape,
                                                                       eval_spec)
    if extractor is not None:
        fake = task.sample(state, rng.stream(config.seed, "eval_samples"), config.eval_samples)
        results.update(score_samples(fake, config.eval_samples, config, eval_spec, extractor))
    return results


def next_batches(it: Iterator[dict], n: int, stacked: bool) -> dict:
    """The next batch, or the next ``n`` stacked on a leading axis for a multi-step call
    (on the device where the memory source already holds them)."""
    if not stacked:
        return next(it)
    batches = [next(it) for _ in range(n)]
    stack = jnp.stack if isinstance(batches[0]["image"], jax.Array) else np.stack
    return {k: stack([b[k] for b in batches]) for k in batches[0]}


@dataclasses.dataclass(frozen=True)
class Setup:
    """What a run is made of, before any state exists: the task built for the driver's
    axis, the data specs and the first test batch (the fixed reconstruction inputs)."""

    config: ml_collections.ConfigDict
    task: Task
    train_spec: gdata.DataSpec
    eval_spec: gdata.DataSpec
    show: dict

    @property
    def image_shape(self) -> tuple[int, ...]:
        return tuple(self.show["image"].shape[1:])

    @property
    def init_key(self) -> jax.Array:
        """The key every fresh state of this run is made from."""
        return rng.stream(self.config.seed, "init")

    def driver(self, step: StepFn) -> parallel.Driver:
        """``step`` (the task's, or a wrapping of it) compiled under ``config.parallel``
        (`genjax.parallel.make_driver`)."""
        c = self.config
        return parallel.make_driver(c.parallel, step, steps_per_call=c.get("steps_per_call", 1),
                                    cpu_dots=c.get("cpu_dots", "auto"))

    def init_state(self) -> TrainState:
        """The fresh state of this run (jitted: eager Flax init compiles every initialiser
        op on its own), before any `data_initialized`."""
        return jax.jit(self.task.init)(self.init_key)

    def data_initialized(self, fresh: TrainState) -> TrainState:
        """A fresh state through the task's ``data_init`` (`data_initialized`); never
        applied to a restored one."""
        return data_initialized(self.task, fresh, self.train_spec, self.config.batch_size)

    def train_batches(self, start_step: int) -> Iterator[dict]:
        """The run's training batches (host arrays, or device arrays from the memory
        source) from batch ``start_step`` on, each ``task.examples_per_step`` examples."""
        return gdata.train_iterator(self.train_spec, "train",
                                    global_batch_size=self.task.examples_per_step,
                                    start_step=start_step)

    def images(self, state: TrainState) -> dict[str, np.ndarray]:
        """The task's picture grids of ``state`` (one local copy) on the fixed test batch."""
        return self.task.images(state, self.show)

    def train_metrics(self, means: dict[str, float], state: TrainState) -> dict[str, float]:
        """A log row's training means (over the steps since the last row) as the run
        reports them: one model's as they are."""
        del state
        return means

    def report(self, workdir: str, state: TrainState, results: dict[str, float]) -> None:
        """Say the final evaluation's ``results`` (written to the metrics already)."""
        del workdir, state
        if results:
            info("Final metrics: " + ", ".join(f"{k} {v:.4f}" for k, v in results.items()))

    def evaluate(self, state: TrainState, final: bool = False) -> dict[str, float]:
        """`evaluate` of ``state`` (one local copy); ``final``: the run's last one."""
        return evaluate(self.task, state, self.config, self.eval_spec, self.image_shape, final)


def data_initialized(task: Task, state: TrainState, spec: gdata.DataSpec,
                     batch_size: int) -> TrainState:
    """``state`` through ``task.data_init`` with the first training batch of ``spec``
    (process 0's batch on every process), or ``state`` itself for tasks without one. For
    fresh states only: a restored state already holds its data-set parameters."""
    if task.data_init is None:
        return state
    first = next(gdata.train_iterator(spec, "train", global_batch_size=batch_size))
    first = {k: np.asarray(v) for k, v in first.items()}
    if jax.process_count() > 1:
        first = multihost_utils.broadcast_one_to_all(first)
    return jax.jit(task.data_init)(state, first)


def setup(config: ml_collections.ConfigDict) -> Setup:
    """Check ``config`` (clear errors before any work), then build its task: the data-parallel
    axis is decided here, once, from ``config.parallel``, and handed to the task."""
    if config.task not in TASKS:
        raise ValueError(f"Unknown task {config.task!r}; valid: {', '.join(TASKS)}.")
    check_config(config)
    parallel.check_batch(config.parallel, config.batch_size)
    train_spec, eval_spec = data_specs(config)
    show = next(gdata.eval_iterator(eval_spec, "test", global_batch_size=config.eval_batch_size))
    task = TASKS[config.task](config, show["image"].shape[1:], parallel.step_axis(config.parallel))
    return Setup(config, task, train_spec, eval_spec, show)


