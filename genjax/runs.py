"""A training run from Python: load a workdir, draw samples, score them.

  from genjax import runs
  run = runs.load("runs/ddpm")                     # the newest usable checkpoint
  images = run.sample(64)                          # [64, 28, 28, 1] in [0, 1]
  images = run.sample(64, sampler="ddim", sample_steps=20)
  metrics = run.evaluate(num_samples=500)          # FID, IS, KID, precision/recall, ...
  best = runs.load("runs/ddpm", step="best")       # the step kept by config.keep_best
  nats = run.log_likelihood(images)                # per image (likelihood families)
  runs.export("runs/ddpm", "ddpm.npz")             # parameters only, by path
  again = runs.from_export("ddpm.npz")             # samples exactly as the run does

`load` reads the run's config as it was trained (``config.json`` with the changes of
``resumes.jsonl``, `genjax.record.run_config`) and restores a checkpoint read-only
through the checksummed `genjax.checkpoint.Checkpointer`: nothing in the workdir is
created, moved or deleted, so it is safe beside a live trainer. Sampling uses the EMA
weights where the run keeps them. A family's sampler fields (`SAMPLING`) may be changed
for sampling and evaluation, never the model. ``genjax-evaluate`` is the command
line over `Run.evaluate`.

An export (`export`, `Run.export`) is an ``.npz`` of the parameters sampling and scoring
read, keyed by their paths in the state (``nets/model/params/Dense_0/kernel``; the EMA
weights in place of the trained ones where the run keeps them; BatchNorm statistics and
``extra`` state such as the RBMs' offsets, never optimizer state, the rng or persistent
chains), plus `EXPORT_CONFIG` (the run's config as JSON) and `EXPORT_STEP`. It loads
with ``np.load(path, allow_pickle=False)``; `from_export` and `Run.with_params` put it
back into a run, refusing a missing or unknown path, a shape that differs, or a file
from another config.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Iterable, Iterator, Mapping

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging

from genjax import data as gdata
from genjax import loop, population, ranking, record, rng, workers
from genjax.checkpoint import Checkpointer, host_values, leaf_path
from genjax.metrics.evaluation import Extractor
from genjax.report import MetricWriter
from genjax.state import TrainState
from genjax.tasks import RESUMABLE
from genjax.tasks.common import collect_images, domain_extractor_for, sample_class_accuracy

# What each family's sampling may change (beside the model it trained, which stays).
SAMPLING = {"diffusion": ("sampler", "sample_steps", "eta", "variance", "guidance"),
            "pixelcnn": ("guidance",),
            "flow": ("temperature",)}
# A flow's latent scale beyond a few standard deviations draws from far outside where the
# density was trained: the samples are saturated noise, their scores meaningless.
MAX_TEMPERATURE = 10.0
EXTRACTORS = ("domain", "inception")
EXPORT_CONFIG, EXPORT_STEP = "__config__", "__step__"  # an export's keys beside the paths
_NO_LIKELIHOOD = {  # task -> why Run.log_likelihood has nothing to compute
    "gan": "a GAN defines no likelihood",
    "vae": "an autoencoder (config.deterministic=True) defines no likelihood",
    "rbm": "only a single RBM with AIS (config.ais_temperatures > 0) estimates one",
    "classifier": "a classifier models labels, not images",
}


class ExportMismatchError(ValueError):
    """An exported file does not fit the run it is put into."""


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


def _sampling_tag(config: ml_collections.ConfigDict,
                  trained: ml_collections.ConfigDict | None = None) -> str:
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
      workdir: the run's directory (None for a run made by `from_export`).
      trained: the config as trained (resumes replayed).
      config: ``trained`` with the sampler fields given to `load`.
      state: the restored `TrainState` (``state.step`` is the checkpoint's step).
      setup: the task built from ``config`` (`genjax.loop.Setup`).
      member: the member of a population run this is (None: a run of one model); its
        config and state are then the member's own, as a run of it alone would hold them.
    """

    workdir: str | None
    trained: ml_collections.ConfigDict
    config: ml_collections.ConfigDict
    state: TrainState
    setup: loop.Setup
    member: int | None = None

    @property
    def step(self) -> int:
        """The restored checkpoint's step."""
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

    def evaluate(self, num_samples: int | None = None, *, extractor: Extractor | None = None,
                 name: str = "domain",
                 samples: Iterable[np.ndarray] | None = None, real_baseline: bool = False,
                 write: bool = True) -> dict[str, float]:
        """The sample metrics of ``num_samples`` samples (default the config's
        ``eval_samples``): FID, IS, KID, precision/recall and mode coverage with
        ``extractor`` (default the domain classifier of the run's data, `domain_extractor_for`;
        without one, {} and one line saying so; ``name`` goes in the keys), and for a
        conditional run the class accuracy. ``samples``: the batches to score
        (default `batches` of this run, or `real_batches` with ``real_baseline``: a
        baseline, never written, with no class accuracy). ``write``: append the metrics at
        this step to ``evaluations.jsonl`` (apart from the run's own ``metrics.jsonl``).

        Raises:
          ValueError: fewer than 2 samples.
          genjax.record.DataChangedError: the run's data changed since it started (its
            ``dataset.json`` records another identity), checked before anything is drawn.
        """
        n = self.config.eval_samples if num_samples is None else num_samples
        if n < 2:
            raise ValueError(f"--num_samples must be at least 2, got {n}.")
        if self.workdir:
            record.check_evaluation_data(self.workdir, self.trained.dataset,
                                         gdata.dataset_id(self.setup.train_spec))
        spec, domain = self.setup.eval_spec, None
        if extractor is None:
            extractor = domain = domain_extractor_for(self.config, self.setup.image_shape, spec)
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
        results.update(self._class_accuracy(scored, tag, real_baseline, domain))
        if write and not real_baseline and self.workdir:  # a baseline is no result of the run
            writer = MetricWriter(self.workdir, record.EVALUATIONS)
            writer.scalars(self.step, results if self.member is None else {
                population.member_key(k, self.member): v for k, v in results.items()})
            writer.close()
        return results

    def log_likelihood(self, images: np.ndarray, labels: np.ndarray | None = None
                       ) -> np.ndarray:
        """log p(x) in nats of each image [N] (``images`` [N, H, W, C] in [0, 1], as `sample`
        returns them; ``labels`` [N] for a class-conditional autoregressive run), as the
        run's evaluation computes it, batch by batch with its keys:

        - PixelCNN: exact (``-test/nll``).
        - flows: log P of the 8-bit image under uniform dequantisation, E_u log p((k +
          u) / 256) + D log 256 averaged over ``config.eval_draws`` draws u: a bound
          (from below) on the discrete log-likelihood; points: the exact density.
        - VAE: the IWAE estimate with ``config.iwae_samples`` samples, a bound from below
          (``-test/iwae_nll_k<K>``).
        - diffusion: the variational bound (``-test/nll_bound``; stratified over t when
          ``config.vlb_timesteps`` < T - 1), with the EMA weights where kept.
        - RBM: -F(v) - log Z with the final evaluation's forward-AIS log Z (an estimate,
          over on average: ``test/ais_log_likelihood``).

        Equal images in the evaluation's order and batch size give the evaluation's
        values. Binary models take binary images only, 8-bit ones images on the k / 255
        grid (nothing is binarised or rounded here).

        Raises:
          ValueError: a run without a likelihood (GANs, autoencoders, deep belief nets),
            images of another shape or off the model's values, labels missing or unused.
        """
        task = self.setup.task
        if task.log_likelihood is None:
            why = _NO_LIKELIHOOD.get(self.config.task, "it defines no likelihood")
            raise ValueError(f"This {self.config.task} run has no log-likelihood: {why}.")
        x = model_inputs(np.asarray(images), self.setup.eval_spec.preprocess,
                         self.setup.image_shape)
        batches = _batches(x, self._labels(labels, len(x)), self.config.eval_batch_size)
        return np.concatenate(list(task.log_likelihood(self.state, batches)))

    def _labels(self, labels: np.ndarray | None, n: int) -> np.ndarray:
        """The labels a class-conditional autoregressive run's likelihood is given ([n]
        zeros for the rest, which do not read them)."""
        conditional = self.config.task == "pixelcnn" and bool(self.config.num_classes)
        if conditional != (labels is not None):
            raise ValueError("A class-conditional PixelCNN run needs labels=[N] class indices."
                             if conditional else f"labels apply to class-conditional PixelCNN "
                             f"runs only; this {self.config.task} run's likelihood takes none.")
        if labels is None:
            return np.zeros((n,), np.int32)
        labels = np.asarray(labels)
        if labels.shape != (n,):
            raise ValueError(f"labels must have shape ({n},), one per image, got {labels.shape}.")
        return labels.astype(np.int32)

    def export(self, path: str) -> str:
        """Write this run's parameters (`parameters`), config and step to ``path`` (an
        ``.npz``, written whole or not at all); returns ``path``."""
        arrays = {**parameters(self.state),
                  EXPORT_CONFIG: np.array(json.dumps(record.plain(self.trained), sort_keys=True)),
                  EXPORT_STEP: np.array(self.step, np.int64)}
        with record.atomic_file(path, "wb") as f:
            np.savez(f, **arrays)
        return path

    def with_params(self, exported: str | Mapping[str, np.ndarray]) -> Run:
        """This run with the parameters of ``exported`` (a path written by `export`, or its
        arrays), checked against this run (`ExportMismatchError`)."""
        arrays = _read_export(exported)
        _check_export_config(arrays, self.trained)
        return dataclasses.replace(self, state=with_parameters(self.state, arrays))

    def _class_accuracy(self, scored: Iterable[np.ndarray], tag: str, real: bool,
                        classifier: Extractor | None = None) -> dict[str, float]:
        """A conditional run's class accuracy of the ``scored`` samples ({} otherwise), by
        ``classifier``: the run's domain classifier (looked up when not given)."""
        if not self.config.get("num_classes") or real:
            return {}
        if classifier is None:
            classifier = domain_extractor_for(self.config, self.setup.image_shape,
                                              self.setup.eval_spec)
        if classifier is None:
            return {}
        return sample_class_accuracy(scored, self.config, classifier, f"test/domain_{tag}")


def load(workdir: str, step: int | str | None = None,
         sampling: Mapping[str, Any] | None = None, member: int | None = None) -> Run:
    """The run in ``workdir`` at checkpoint ``step`` (default: the newest usable one;
    ``"best"``: the one kept by the run's ``config.keep_best``), with the sampler fields
    ``sampling`` (`SAMPLING`; checked before anything compiles); of a population run,
    ``member`` i (`members` lists them) as a run of it alone.

    Raises:
      FileNotFoundError: no ``config.json`` (not a run), no checkpoint, or no evaluated
        one to be best.
      ValueError: a sampler field the family does not take, or out of range; ``"best"``
        of a run without ``config.keep_best``; a population without ``member`` (or a
        member out of range), or ``member`` of a run that is not a population.
      CheckpointsUnreadableError: checkpoints exist and none is usable.
    """
    trained = record.run_config(workdir)
    _check_member(workdir, trained, member)
    if member is not None and workers.has_members(workdir):  # each member a run of its own
        return load(workers.member_dir(workdir, member), step, sampling)
    config = with_sampling(trained, sampling or {})
    setup = loop.setup(config)
    ckpt = Checkpointer(os.path.join(workdir, "checkpoints"), read_only=True)
    if step == "best":
        step = _best_step(ckpt, trained)
    if step is None:
        state = ckpt.restore(setup.init_state())
    elif step in ckpt.all_steps():
        state = ckpt.read(step, setup.init_state())
    else:
        raise FileNotFoundError(f"No checkpoint of step {step} in {ckpt.directory}; it has "
                                f"{ckpt.all_steps() or 'none'}.")
    if state is None:
        raise FileNotFoundError(f"No checkpoint in {ckpt.directory}.")
    if member is None:
        return Run(os.path.abspath(workdir), trained, config, state, setup)
    return Run(os.path.abspath(workdir), population.member_config(trained, setup.roster[member]),
               setup.members[member].config, population.member_state(state, member),
               setup.members[member], member)


def members(workdir: str) -> list[population.Member]:
    """The members of the population run in ``workdir`` ([] for a run of one model)."""
    trained = record.run_config(workdir)
    return population.roster(trained) if population.is_population(trained) else []


def _check_member(workdir: str, trained: ml_collections.ConfigDict, member: int | None) -> None:
    """Refuse a population loaded without a member, a member out of range, or a member of
    a run that is not a population, in one line."""
    roster = population.roster(trained) if population.is_population(trained) else []
    if member is None and roster:
        raise ValueError(f"{workdir} holds a population of {len(roster)} members "
                         f"({roster[0].label}, ...); load one with member=i, i in "
                         f"0..{len(roster) - 1} (genjax-evaluate --member=i or all).")
    if member is not None and not roster:
        raise ValueError(f"member={member}: the run in {workdir} is not a population.")
    if member is not None and not 0 <= member < len(roster):
        raise ValueError(f"member={member}: the population in {workdir} has members "
                         f"0..{len(roster) - 1}.")


def _best_step(ckpt: Checkpointer, trained: ml_collections.ConfigDict) -> int:
    """The step kept as best by ``trained.keep_best`` (`Checkpointer.best_step`)."""
    name = trained.get("keep_best")
    if name is None:
        raise ValueError(f"step='best': the run in {os.path.dirname(ckpt.directory)} keeps no "
                         f"best checkpoint (config.keep_best is unset); its steps: "
                         f"{ckpt.all_steps() or 'none'}.")
    best = ckpt.best_step(ranking.goodness(name))
    if best is None:
        raise FileNotFoundError(f"step='best': no checkpoint in {ckpt.directory} was saved with "
                                f"a finite {ranking.metric_key(name)} yet (config.keep_best).")
    return best


def model_inputs(images: np.ndarray, preprocess: str, shape: tuple[int, ...]) -> np.ndarray:
    """``images`` in [0, 1] as the model's evaluation inputs for ``preprocess``: binary ones
    as they are, 8-bit ones (on the k / 255 grid) as the data pipeline serves level k
    (`genjax.data.LEVEL_VALUES`), ``raw`` data as it is. A one-line `ValueError` for
    another shape, or values the model does not take."""
    if images.ndim != len(shape) + 1 or tuple(images.shape[1:]) != tuple(shape):
        raise ValueError(f"images must have shape [N, {', '.join(map(str, shape))}] (this run's "
                         f"data), got {list(images.shape)}.")
    x = images.astype(np.float32)
    if preprocess == "raw":
        return x
    if preprocess.startswith("binarize"):
        if not np.all((x == 0) | (x == 1)):
            raise ValueError("This run models binary pixels: pass images of 0s and 1s (e.g. a "
                             "Bernoulli draw of grey values); nothing is binarised here.")
        return x
    levels = np.rint(x * 255)
    if not (np.all((x >= 0) & (x <= 1)) and np.max(np.abs(x * 255 - levels), initial=0) < 1e-3):
        raise ValueError("This run models 8-bit pixels: pass images in [0, 1] on the k / 255 "
                         "grid (e.g. np.round(x * 255) / 255); nothing is rounded here.")
    return gdata.LEVEL_VALUES[preprocess][levels.astype(np.int64)]


def _batches(x: np.ndarray, labels: np.ndarray, size: int) -> Iterator[dict]:
    """``x`` and ``labels`` as evaluation batches of ``size`` (the last padded, ``mask``
    marking the real rows), as `genjax.data.eval_iterator` serves them."""
    for i in range(0, len(x), size):
        real = len(x[i:i + size])
        pad = lambda a: np.concatenate([a, np.zeros((size - real, *a.shape[1:]), a.dtype)])  # noqa: E731
        yield {"image": pad(x[i:i + size]), "label": pad(labels[i:i + size]),
               "mask": (np.arange(size) < real).astype(np.float32)}


def _ema_net(state: TrainState) -> str | None:
    """The network whose weights ``state.extra["ema"]`` averages (same tree), or None."""
    ema = state.extra.get("ema")
    if ema is None:
        return None
    shape = lambda tree: jax.tree.map(jnp.shape, tree)  # noqa: E731
    return next((n for n, net in state.nets.items() if shape(net.params) == shape(ema)), None)


def parameters(state: TrainState) -> dict[str, np.ndarray]:
    """What sampling and scoring read of ``state``, by leaf path: every network's params
    (the EMA weights in place of the trained ones where kept) and BatchNorm statistics,
    and ``extra`` but for the EMA copy and persistent chains; no optimizer state, rng or
    step."""
    ema_net = _ema_net(state)
    tree = {"nets": {n: {"params": state.extra["ema"] if n == ema_net else net.params,
                         "batch_stats": net.batch_stats} for n, net in state.nets.items()},
            "extra": {k: v for k, v in state.extra.items() if k not in ("ema", "chains")}}
    return {leaf_path(p): host_values(v) for p, v in jax.tree_util.tree_flatten_with_path(tree)[0]}


def with_parameters(state: TrainState, arrays: Mapping[str, np.ndarray]) -> TrainState:
    """``state`` with the leaves of `parameters` replaced by ``arrays`` (the EMA copy too,
    where kept).

    Raises:
      ExportMismatchError: a path missing or unknown, or a shape that differs.
    """
    want = parameters(state)
    given = {k: np.asarray(v) for k, v in arrays.items() if k not in (EXPORT_CONFIG, EXPORT_STEP)}
    problems = {"missing": sorted(want.keys() - given.keys()),
                "not in this run": sorted(given.keys() - want.keys()),
                "shape differs": [f"{k} {given[k].shape} vs {want[k].shape}" for k in sorted(want)
                                  if k in given and given[k].shape != want[k].shape]}
    found = [f"{what}: {', '.join(ks[:3])}{', ...' if len(ks) > 3 else ''}"
             for what, ks in problems.items() if ks]
    if found:
        raise ExportMismatchError(f"The exported parameters do not fit this run ({'; '.join(found)}): "
                                  f"export and load with the same config.")
    ema_net = _ema_net(state)

    def put(path, leaf):
        key = leaf_path(path)
        if ema_net is not None and key.startswith("extra/ema/"):
            key = f"nets/{ema_net}/params/" + key[len("extra/ema/"):]
        return jnp.asarray(given[key], leaf.dtype) if key in given else leaf

    return jax.tree_util.tree_map_with_path(put, state)


def _read_export(exported: str | Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The arrays of an export (a path, read without pickles, or the arrays themselves)."""
    if not isinstance(exported, (str, os.PathLike)):
        return dict(exported)
    with np.load(exported, allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


def _export_config(arrays: Mapping[str, np.ndarray]) -> ml_collections.ConfigDict:
    """The config an export was written with (`ExportMismatchError` when it has none)."""
    if EXPORT_CONFIG not in arrays:
        raise ExportMismatchError(f"The file holds no {EXPORT_CONFIG} (the config it was "
                                  f"exported with): not a genjax.runs export.")
    return ml_collections.ConfigDict(json.loads(str(arrays[EXPORT_CONFIG])))


def _check_export_config(arrays: Mapping[str, np.ndarray],
                         trained: ml_collections.ConfigDict) -> None:
    """Refuse an export whose config differs from ``trained`` in what the model means (any
    field a resume could not change)."""
    config = _export_config(arrays)
    changed = record.changes(record.plain(config), record.plain(trained))
    allowed = record.RESUMABLE | RESUMABLE.get(trained.task, frozenset())
    refused = {k: v for k, v in changed.items() if k not in allowed}
    if refused:
        raise ExportMismatchError(f"The file was exported from another config (its value -> "
                                  f"this run's: {record.describe(refused)}): load it with "
                                  f"genjax.runs.from_export, or into a run of its config.")


def export(workdir: str, path: str, step: int | str | None = None) -> str:
    """Write the parameters of the run in ``workdir`` at ``step`` (as `load`) to ``path``
    (`Run.export`); returns ``path``."""
    return load(workdir, step).export(path)


def from_export(path: str, sampling: Mapping[str, Any] | None = None) -> Run:
    """The run an export describes: its config rebuilt (the dataset must be readable, as
    for `load`), a fresh state with the exported parameters and step (``workdir`` None:
    `Run.evaluate` writes nothing)."""
    arrays = _read_export(path)
    trained = _export_config(arrays)
    config = with_sampling(trained, sampling or {})
    setup = loop.setup(config)
    state = with_parameters(setup.init_state(), arrays)
    state = state.replace(step=jnp.asarray(int(arrays.get(EXPORT_STEP, 0)), jnp.int32))
    return Run(None, trained, config, state, setup)
