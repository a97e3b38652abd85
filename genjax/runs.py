"""A training run from Python: load a workdir, draw samples, score them.

  from genjax import runs
  run = runs.load("runs/ddpm")                     # the newest usable checkpoint
  images = run.sample(64)                          # [64, 28, 28, 1] in [0, 1]
  images = run.sample(64, sampler="ddim", sample_steps=20)
  metrics = run.evaluate(num_samples=500)          # FID, IS, KID, precision/recall, ...

`load` reads the run's config as it was trained (``config.json`` with the changes of
``resumes.jsonl``, `genjax.record.run_config`) and restores a checkpoint read-only
through the checksummed `genjax.checkpoint.Checkpointer`: nothing in the workdir is
created, moved or deleted, so it is safe beside a live trainer. Sampling uses the EMA
weights where the run keeps them. A family's sampler fields (`SAMPLING`) may be changed
for sampling and evaluation, never the model. ``genjax-evaluate`` is the command
line over `Run.evaluate`.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Iterable, Iterator, Mapping

import jax
import ml_collections
import numpy as np
from absl import logging

from genjax import data as gdata
from genjax import loop, record, rng
from genjax.checkpoint import Checkpointer
from genjax.report import MetricWriter
from genjax.state import TrainState
from genjax.tasks.common import collect_images, domain_extractor_for, sample_class_accuracy

# What each family's sampling may change (beside the model it trained, which stays).
SAMPLING = {"diffusion": ("sampler", "sample_steps", "eta", "variance", "guidance"),
            "pixelcnn": ("guidance",),
            "flow": ("temperature",)}
# A flow's latent scale beyond a few standard deviations draws from far outside where the
# density was trained: the samples are saturated noise, their scores meaningless.
MAX_TEMPERATURE = 10.0
EXTRACTORS = ("domain", "inception")


def with_sampling(config: ml_collections.ConfigDict, sampling: Mapping[str, Any]
                  ) -> ml_collections.ConfigDict:
    """``config`` with the given sampler fields replaced (None values are left out);
    `SAMPLING` says which fields a family takes, and a ``temperature`` outside (0,
    `MAX_TEMPERATURE`] is refused. A one-line `ValueError` before anything compiles."""
    sampling = {k: v for k, v in sampling.items() if v is not None}
    every = sorted({f for fields in SAMPLING.values() for f in fields})
    unknown = set(sampling) - set(every)
    if unknown:
        raise ValueError(f"Unknown sampling fields {sorted(unknown)}; valid: {', '.join(every)}.")
    wrong = [f for f in sampling if f not in SAMPLING.get(config.task, ())]
    if wrong:
        takers = [t for t in SAMPLING if wrong[0] in SAMPLING[t]]
        verb = "applies" if len(wrong) == 1 else "apply"
        raise ValueError(f"--{', --'.join(wrong)} {verb} to {' and '.join(takers)} runs; this run "
                         f"is task {config.task!r}.")
    temperature = sampling.get("temperature", 1.0)
    if not 0 < temperature <= MAX_TEMPERATURE:  # NaN fails this too
        raise ValueError(f"--temperature must be in (0, {MAX_TEMPERATURE:g}] (the latent's scale "
                         f"T, z ~ N(0, T^2 I); 1 is the trained density), got {temperature!r}.")
    config = config.copy_and_resolve_references()
    with config.unlocked():
        config.update(sampling)
    return config


def metric_tag(config: ml_collections.ConfigDict, num_samples: int,
               trained: ml_collections.ConfigDict | None = None) -> str:
    """What `Run.evaluate` puts between ``test/<extractor>_`` and a metric's name: how a
    diffusion run's samples were drawn, a flow's temperature (``T0.5_``) when it differs
    from the run's own (``trained``: the config it trained with), and ``n<count>_`` when
    ``num_samples`` differs from the config's ``eval_samples`` (so that a smaller check
    never shares a key with the run's own figures)."""
    count = f"n{num_samples}_" if num_samples != config.eval_samples else ""
    return _sampling_tag(config, trained) + count


def _sampling_tag(config, trained=None) -> str:
    """How a diffusion run's samples were drawn, for its metric keys (``ddim50_eta0_``,
    ``ddpm50_large_``, ``dpm++2m20_w1.5_``), an autoregressive run's guidance (``w2_``,
    when trained with label dropout), a flow's temperature when it differs from the
    ``trained`` config's (``T1_``); empty for other families."""
    if config.task == "flow":
        same = trained is None or config.temperature == trained.temperature
        return "" if same else f"T{config.temperature:g}_"
    if config.task == "pixelcnn":
        return f"w{config.guidance:g}_" if config.get("label_dropout") else ""
    if config.task != "diffusion":
        return ""
    tag = f"{config.sampler}{config.sample_steps}_"
    tag += f"eta{config.eta:g}_" if config.sampler == "ddim" else ""
    tag += f"{config.variance}_" if config.sampler == "ddpm" else ""
    return tag + (f"w{config.guidance:g}_" if config.num_classes else "")


@dataclasses.dataclass(frozen=True)
class Run:
    """A run's workdir, the config it trained with, a restored state and what sampling
    and scoring need (`load` makes one).

    Attributes:
      workdir: the run's directory.
      trained: the config as trained (resumes replayed).
      config: ``trained`` with the sampler fields given to `load`.
      state: the restored `TrainState` (``state.step`` is the checkpoint's step).
      setup: the task built from ``config`` (`genjax.loop.Setup`).
    """

    workdir: str
    trained: ml_collections.ConfigDict
    config: ml_collections.ConfigDict
    state: TrainState
    setup: loop.Setup

    @property
    def step(self) -> int:
        return int(self.state.step)

    def with_sampling(self, **sampling) -> Run:
        """This run with other sampler fields (`SAMPLING`); the state is shared."""
        if not any(v is not None for v in sampling.values()):
            return self
        config = with_sampling(self.config, sampling)
        return dataclasses.replace(self, config=config, setup=loop.setup(config))

    def batches(self, n: int, key: jax.Array | None = None, **sampling) -> Iterator[np.ndarray]:
        """``n`` samples as batches [b, H, W, C] in [0, 1] (``key``: default the run's
        evaluation key, so the same draw as its evaluations)."""
        run = self.with_sampling(**sampling)
        if run.setup.task.sample is None:
            raise ValueError(f"Task {run.config.task!r} (deterministic="
                             f"{run.config.get('deterministic')}) does not generate samples.")
        key = rng.stream(run.config.seed, "eval_samples") if key is None else key
        return run.setup.task.sample(run.state, key, n)

    def real_batches(self, n: int) -> list[np.ndarray]:
        """``n`` real training images in [0, 1] (one batch): what a perfect generator's
        samples would score, the floor of the metrics' protocol."""
        spec = self.setup.eval_spec
        return [collect_images(gdata.eval_iterator(
            spec, "train", global_batch_size=self.config.eval_batch_size), n, spec.preprocess)]

    def sample(self, n: int, key: jax.Array | None = None, **sampling) -> np.ndarray:
        """``n`` samples [n, H, W, C] in [0, 1], with this run's sampler or the given
        fields (e.g. ``sampler="ddim", sample_steps=20``; ``temperature=0.7``)."""
        return np.concatenate(list(self.batches(n, key, **sampling)))

    def evaluate(self, num_samples: int | None = None, *, extractor=None, name: str = "domain",
                 samples: Iterable[np.ndarray] | None = None, real_baseline: bool = False,
                 write: bool = True) -> dict[str, float]:
        """The sample metrics of ``num_samples`` samples (default the config's
        ``eval_samples``): FID, IS, KID, precision/recall and mode coverage with
        ``extractor`` (default the domain classifier of the run's data, `domain_extractor_for`;
        without one, {} and one line saying so; ``name`` goes in the keys), and for a
        conditional run the class accuracy. ``samples``: the batches to score
        (default `batches` of this run, or `real_batches` with ``real_baseline``: a
        baseline, never written, with no class accuracy). ``write``: append the metrics at
        this step to ``evaluations.jsonl`` (apart from the run's own ``metrics.jsonl``)."""
        n = self.config.eval_samples if num_samples is None else num_samples
        if n < 2:
            raise ValueError(f"--num_samples must be at least 2, got {n}.")
        spec = self.setup.eval_spec
        if extractor is None:
            extractor = domain_extractor_for(self.config, self.setup.image_shape, spec)
            if extractor is None:
                return {}
        if samples is None:
            samples = self.real_batches(n) if real_baseline else self.batches(n)
        if n > gdata.num_examples(spec, "test"):
            logging.warning("The test split is smaller than --num_samples=%d; the metrics use as "
                            "many samples as it has images.", n)
        scored = []  # the samples scoring used, for a conditional run's class check
        tag = metric_tag(self.config, n, self.trained)
        results = loop.score_samples(samples, n, self.config, spec, extractor,
                                     prefix=f"test/{name}_{tag}", scored=scored)
        results.update(self._class_accuracy(scored, tag, real_baseline))
        if write and not real_baseline:  # the baseline is not this run's result
            writer = MetricWriter(self.workdir, record.EVALUATIONS)
            writer.scalars(self.step, results)
            writer.close()
        return results

    def _class_accuracy(self, scored: Iterable[np.ndarray], tag: str, real: bool
                        ) -> dict[str, float]:
        """A conditional run's class accuracy of the ``scored`` samples ({} otherwise)."""
        if not self.config.get("num_classes") or real:
            return {}
        classifier = domain_extractor_for(self.config, self.setup.image_shape,
                                          self.setup.eval_spec)
        if classifier is None:
            return {}
        return sample_class_accuracy(scored, self.config, classifier, f"test/domain_{tag}")


def load(workdir: str, step: int | None = None, sampling: Mapping[str, Any] | None = None
         ) -> Run:
    """The run in ``workdir`` at checkpoint ``step`` (default: the newest usable one),
    with the sampler fields ``sampling`` (`SAMPLING`; checked before anything compiles).

    Raises:
      FileNotFoundError: no ``config.json`` (not a run), or no checkpoint.
      ValueError: a sampler field the family does not take, or out of range.
      CheckpointsUnreadableError: checkpoints exist and none is usable.
    """
    trained = record.run_config(workdir)
    config = with_sampling(trained, sampling or {})
    setup = loop.setup(config)
    ckpt = Checkpointer(os.path.join(workdir, "checkpoints"), read_only=True)
    if step is None:
        state = ckpt.restore(setup.init_state())
    elif step in ckpt.all_steps():
        state = ckpt.read(step, setup.init_state())
    else:
        raise FileNotFoundError(f"No checkpoint of step {step} in {ckpt.directory}; it has "
                                f"{ckpt.all_steps() or 'none'}.")
    if state is None:
        raise FileNotFoundError(f"No checkpoint in {ckpt.directory}.")
    return Run(os.path.abspath(workdir), trained, config, state, setup)
