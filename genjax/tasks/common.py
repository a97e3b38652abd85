"""What the training loop needs from a model family, and shared config helpers."""

from __future__ import annotations

import functools
from typing import Callable, Iterable, Iterator, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from genjax import data as gdata
from genjax import ranking, rng
from genjax.data import SOURCES, Batch
from genjax.metrics import domain, evaluation
from genjax.precision import COMPUTE_DTYPES
from genjax.report import info
from genjax.state import TrainState
from genjax.steps import StepFn
from genjax.xla_cpu import CPU_DOTS


class Task(NamedTuple):
    """A model family, assembled from a config by its ``build(config, image_shape)``.

    Attributes:
      init: root key -> fresh `TrainState`.
      train_step: the per-device step ``(state, batch) -> (state, metrics)``, not yet jitted.
      evaluate: (state, batches) -> test metrics (floats), e.g. ``{"test/neg_elbo": ...}``.
      images: (state, a real batch) -> named [N, H, W, C] image batches in [0, 1] (or
        [R, K, H, W, C]: a grid of R rows of K, see `genjax.report.image_grid`).
      examples_per_step: real examples one step consumes (batch * n_critic for GANs).
      sample: (state, key, n) -> an iterator of generated image batches [b, H, W, C] in
        [0, 1], n images in all (EMA weights when kept; batches, so that 50k samples never
        sit in memory at once), or None for models that do not generate (autoencoders,
        classifiers).
      data_init: (fresh state, the run's first training batch) -> the state to train from,
        for models whose initial parameters depend on data (the flows' ActNorm); None
        for the rest. The loop applies it to every fresh state, never to a restored one.
      final_evaluate: (state, test batches) -> metrics too costly for every evaluation
        (the RBMs' AIS log-likelihood), added to the run's final evaluation only; None
        for the rest.
      log_likelihood: (state, batches) -> per batch, the log-likelihood in nats of each
        real (unmasked) row, as the evaluation computes it (the same keys for the same
        batches; see `genjax.runs.Run.log_likelihood` for what each family's is); None
        for models without one (GANs, autoencoders, deep belief nets, classifiers).
    """

    init: Callable[[jax.Array], TrainState]
    train_step: StepFn
    evaluate: Callable[[TrainState, Iterable[Batch]], dict[str, float]]
    images: Callable[[TrainState, Batch], dict[str, np.ndarray]]
    examples_per_step: int
    sample: Callable[[TrainState, jax.Array, int], Iterator[np.ndarray]] | None = None
    data_init: Callable[[TrainState, Batch], TrainState] | None = None
    final_evaluate: Callable[[TrainState, Iterable[Batch]], dict[str, float]] | None = None
    log_likelihood: Callable[[TrainState, Iterable[Batch]], Iterator[np.ndarray]] | None = None


OPTIMIZERS = ("adam", "rmsprop")

_POSITIVE, _OFF_OR_POSITIVE = (lambda v: v > 0, "positive"), (lambda v: v >= 0, "0 (off) or positive")
# field -> (test, what the value must be); fields a config does not have are skipped.
_RULES = {
    **{f: _POSITIVE for f in ("batch_size", "num_steps", "learning_rate", "g_learning_rate",
                              "d_learning_rate", "latent_dim", "n_critic", "eval_batch_size",
                              "eval_samples", "log_every", "sample_every", "checkpoint_every",
                              "keep_checkpoints", "iwae_samples", "base_width",
                              "steps_per_call", "fade_steps", "stable_steps", "timesteps",
                              "channels", "num_res_blocks", "sample_steps", "groups",
                              "snr_gamma", "features", "num_layers", "head", "levels",
                              "width", "eval_draws", "temperature", "bins", "cd_k",
                              "num_chains", "ais_runs")},
    **{f: _OFF_OR_POSITIVE for f in ("gp_weight", "r1_weight", "clip_value", "beta",
                                     "eval_every", "train_minutes", "unroll_steps",
                                     "num_classes", "guidance", "vlb_timesteps", "clip_norm",
                                     "bound_images", "num_mixtures", "num_blocks",
                                     "weight_decay", "ais_temperatures")},
    "label_smoothing": (lambda v: 0 <= v < 1, "in [0, 1)"),
    "label_dropout": (lambda v: 0 <= v < 1, "in [0, 1)"),
    "eta": (lambda v: 0 <= v <= 1, "in [0, 1]"),
    "lr_decay": (lambda v: v in ("none", "cosine"), "'none' or 'cosine'"),
    "cpu_dots": (lambda v: v in CPU_DOTS, f"one of {', '.join(CPU_DOTS)}"),
    "compute_dtype": (lambda v: v in COMPUTE_DTYPES, f"one of {', '.join(COMPUTE_DTYPES)}"),
    "ema_decay": (lambda v: 0 <= v < 1, "in [0, 1) (0: off)"),
    "b1": (lambda v: 0 <= v < 1, "in [0, 1)"),
    "b2": (lambda v: 0 <= v < 1, "in [0, 1)"),
    "max_skipped_fraction": (lambda v: 0 < v <= 1, "in (0, 1]"),
    "dataset": (lambda v: isinstance(v, str) and v.strip() != "", "a dataset name"),
    "data_source": (lambda v: v in SOURCES, f"one of {', '.join(SOURCES)}"),
    "image_channels": (lambda v: v in (1, 3), "1 or 3 (or None: as stored)"),
    "bad_images": (lambda v: v in ("stop", "skip"), "'stop' or 'skip'"),
    "pack": (lambda v: isinstance(v, int) and v >= 1, "a positive integer"),
    # jax.random.key keeps a seed's low 32 bits: -1 would be 2**32 - 1's run, 2**32 seed 0's
    "seed": (lambda v: isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 2**32,
             "a non-negative integer below 2**32"),
    # None (the default) keeps the dataset's own geometry; the tasks check the sizes
    # against their networks (`check_image_shape`).
    **{f: (lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1,
           "a positive integer (or None: the dataset's own size)")
       for f in ("image_size", "crop")},
    **{f: (lambda v: isinstance(v, (list, tuple)) and len(v) > 0
                     and all(isinstance(w, int) and w > 0 for w in v),
           "a non-empty list of positive integers")
       for f in ("hidden", "conv_features", "minibatch_kernels", "channel_mult")},
}


def check_config(config) -> None:
    """Refuse out-of-range numbers (a zero latent, a negative learning rate, an EMA decay
    of 1, ...) and combinations without meaning, with the fields named, before any data is
    read or anything compiles."""
    for field, (ok, must) in _RULES.items():
        value = config.get(field)
        if value is not None and not ok(value):
            raise ValueError(f"config.{field} must be {must}, got {value!r}.")
    ranking.check_keep_best(config)
    pack, batch = config.get("pack", 1), config.get("batch_size")
    if isinstance(pack, int) and pack > 1 and batch % pack:
        raise ValueError(f"config.batch_size ({batch}) must divide by config.pack ({pack}): "
                         f"PacGAN packs that many real, and generated, samples per critic input.")
    if config.get("likelihood") == "gaussian" and str(config.get("preprocess")).startswith("binarize"):
        # A density on {0, 1}-valued pixels grows without bound as the variance shrinks:
        # the "likelihood" is not a likelihood and its NLL goes to minus infinity.
        raise ValueError(f"config.likelihood='gaussian' on binarised pixels "
                         f"(config.preprocess={config.preprocess!r}) has an unbounded density; "
                         f"use likelihood='bernoulli', or preprocess='unit' for grey values.")


def check_image_shape(config, image_shape: tuple[int, ...], net: str, takes: str | None) -> None:
    """Refuse data whose images ``net`` cannot take, in one line that names the config field
    that gave them their size, before anything compiles or the workdir is written.

    Args:
      image_shape: the shape of one example as the data pipeline serves it.
      net: the network as the message names it, e.g. ``"generator 'conv'"``.
      takes: None when ``net`` takes ``image_shape``; else the shapes it takes, in words
        (the ``*_takes`` functions next to the networks in `genjax.nn`).
    """
    if takes is None:
        return
    if config.get("image_size"):
        source = f"config.image_size={config.image_size}"
    elif config.get("crop"):
        source = f"config.crop={config.crop} (config.image_size unset)"
    else:
        source = (f"config.dataset={config.get('dataset')!r} (config.image_size and "
                  f"config.crop unset)")
    raise ValueError(f"{source} gives images of shape {tuple(image_shape)}, but {net} takes "
                     f"{takes}; set config.image_size (resize) or config.crop (centre crop or "
                     f"pad) to a size it takes.")


def mean_and_stderr(total: float, total_sq: float, count: float) -> tuple[float, float]:
    """The mean of per-image values from their sum, sum of squares and count, and its
    standard error (sample variance with n - 1)."""
    mean = total / count
    var = max(total_sq / count - mean * mean, 0.0) * count / max(count - 1, 1)
    return mean, float(np.sqrt(var / count))


def make_optimizer(name: str, learning_rate: float, *, b1: float = 0.9, b2: float = 0.999,
                   clip_norm: float | None = None, decay_steps: int = 0
                   ) -> optax.GradientTransformation:
    """Adam (``b1``, ``b2``) or RMSprop, optionally after global-norm gradient clipping;
    with ``decay_steps`` > 0 the learning rate follows a cosine from its value to 0 over
    that many steps."""
    if decay_steps:
        learning_rate = optax.cosine_decay_schedule(learning_rate, decay_steps)
    if name == "adam":
        tx = optax.adam(learning_rate, b1=b1, b2=b2)
    elif name == "rmsprop":
        tx = optax.rmsprop(learning_rate)
    else:
        raise ValueError(f"Unknown optimizer {name!r}; valid: {', '.join(OPTIMIZERS)}.")
    return optax.chain(optax.clip_by_global_norm(clip_norm), tx) if clip_norm else tx


def to_unit_range(images: jax.Array, preprocess: str) -> jax.Array:
    """Map model-space images back to [0, 1] for display and scoring, clipped: an
    unbounded output (a Gaussian decoder's mean) may leave the data range. ``raw`` data
    (the 2-D points of ``gaussian_mixtures``) has no such range and is returned as is."""
    if preprocess == "raw":
        return images
    images = (images + 1.0) / 2.0 if preprocess == "symmetric" else images
    return jnp.clip(images, 0.0, 1.0)


def sampler(draw: Callable[[TrainState, jax.Array], jax.Array], chunk: int
            ) -> Callable[[TrainState, jax.Array, int], Iterator[np.ndarray]]:
    """``sample(state, key, n)`` from a jitted fixed-size ``draw(state, key)`` of ``chunk`` images:
    batch i uses ``fold_in(key, i)``, the last one is cut to make n."""

    def sample(state: TrainState, key: jax.Array, n: int) -> Iterator[np.ndarray]:
        for i in range(-(-n // chunk)):
            yield np.asarray(draw(state, jax.random.fold_in(key, i)))[:n - i * chunk]

    return sample


def per_image(value: Callable[[TrainState, Batch, jax.Array | None], jax.Array],
              key: jax.Array | None = None
              ) -> Callable[[TrainState, Iterable[Batch]], Iterator[np.ndarray]]:
    """``log_likelihood(state, batches)`` (`Task`): ``value(state, batch, key_i)`` [B] of
    each batch's real rows, ``key_i = fold_in(key, i)`` for batch i as the evaluations
    draw theirs (None without ``key``)."""

    def log_likelihood(state: TrainState, batches: Iterable[Batch]) -> Iterator[np.ndarray]:
        for i, batch in enumerate(batches):
            values = value(state, batch, None if key is None else jax.random.fold_in(key, i))
            yield np.asarray(values)[np.asarray(batch["mask"]) > 0]

    return log_likelihood


def collect_images(batches: Iterable[Batch], limit: int, preprocess: str) -> np.ndarray:
    """Up to ``limit`` real (unmasked) images from ``batches``, mapped to [0, 1]."""
    images, n = [], 0
    for batch in batches:
        real = np.asarray(batch["image"])[np.asarray(batch["mask"]) > 0]
        images.append(np.asarray(to_unit_range(real, preprocess)))
        n += len(real)
        if n >= limit:
            break
    return np.concatenate(images)[:limit]


def dataset_spec(config) -> gdata.DataSpec:
    """The run's dataset as a spec, for what depends only on which dataset it is (its
    `genjax.data.dataset_id`, its labels), not on how it is served."""
    return gdata.DataSpec(name=config.dataset, data_dir=config.get("data_dir"),
                          download=config.get("download", True))


def label_classes(spec: gdata.DataSpec) -> int | None:
    """How many classes the dataset's ``label`` has; None when it has no class labels."""
    features = gdata.get_builder(spec).info.features
    classes = getattr(features["label"], "num_classes", None) if "label" in features else None
    return None if classes is None else int(classes)


def domain_extractor_for(config, image_shape: tuple[int, ...],
                         spec: gdata.DataSpec | None = None) -> evaluation.Extractor | None:
    """The domain classifier of this run's data (`genjax.metrics.domain.find` by
    ``dataset_id(spec)`` and ``image_shape``; ``spec``: the run's eval spec, default
    `dataset_spec`), or None where there is none: then one info line per process and
    dataset says that the domain metrics are skipped and how to get them. Data that is not
    images ([H, W, C]: the 2-D points of ``gaussian_mixtures``) has none, silently.

    Images padded by ``config.crop`` beyond the dataset's own size (progressive growing
    pads MNIST to 32) are cropped back to the centre for the classifier of that size.
    """
    spec = dataset_spec(config) if spec is None else spec
    shape, name = tuple(int(s) for s in image_shape), gdata.dataset_id(spec)
    if len(shape) != 3:
        return None
    entry = domain.find(name, shape)
    if entry is not None:
        return domain.entry_extractor(entry)
    padded = _padded_from(config, spec, shape)
    if padded is not None:
        return padded
    _say_skipped(name, shape, config.dataset, config.get("image_size"), config.get("crop"),
                 label_classes(spec) is not None)
    return None


def _padded_from(config, spec: gdata.DataSpec, shape: tuple[int, ...]
                 ) -> evaluation.Extractor | None:
    """The classifier of the dataset's own image size, on the centre of images that
    ``config.crop`` padded to a larger square (None when that is not the case)."""
    if shape[0] != shape[1] or shape[0] != config.get("crop") or config.get("image_size"):
        return None
    h, w, c = gdata.get_builder(spec).info.features["image"].shape
    entry = domain.find(gdata.dataset_id(spec), (h, w, c)) if h and w else None
    if entry is None or h > shape[0] or w > shape[1] or c != shape[2]:
        return None
    base, top, left = domain.entry_extractor(entry), (shape[0] - h) // 2, (shape[1] - w) // 2
    return evaluation.Extractor(base.name, lambda x: base(x[:, top:top + h, left:left + w]))


@functools.cache
def _say_skipped(dataset_id: str, shape: tuple[int, ...], dataset: str, image_size: int | None,
                 crop: int | None, labelled: bool) -> None:
    """The one line a run without a domain classifier prints (once per process and case)."""
    where = "x".join(map(str, shape))
    inception = ("`genjax-evaluate --extractor=inception --inception_weights=<the "
                 "converted .npz>` scores samples with Inception weights you supply")
    if not labelled:
        info(f"Domain metrics skipped: dataset {dataset_id!r} has no class labels, so it has no "
             f"domain classifier; {inception}.")
        return
    size = (f" --config.image_size={image_size}" if image_size else
            f" --config.crop={crop}" if crop else "")
    info(f"Domain metrics skipped: no domain classifier for dataset {dataset_id!r} at {where}. "
         f"Train one with `{domain.TRAIN_COMMAND} --config.dataset={dataset}{size} "
         f"--workdir=runs/classifier_{domain.entry_key(dataset_id, shape)}` (it registers in "
         f"{domain.registry_dir()}), or {inception}.")


def sample_metrics(fake: Iterable[np.ndarray], real: Callable[[], np.ndarray], key: str,
                   extractor: evaluation.Extractor, prefix: str) -> dict[str, float]:
    """`genjax.metrics.quality_from_features` of the ``fake`` batches against cached real
    features. Only features are kept, never all the images.

    ``real`` loads the reference images on a cache miss; ``key`` names them
    (dataset-split-preprocess-count) for `genjax.metrics.evaluation.reference_features`.
    """
    fake_features, fake_probs = (np.concatenate(parts) for parts in zip(*map(extractor, fake)))
    real_features = evaluation.reference_features(extractor, key, real)
    return evaluation.quality_from_features(real_features, fake_features, fake_probs,
                                            prefix=prefix)


def class_accuracy(config, image_shape: tuple[int, ...],
                   sample: Callable[[TrainState, jax.Array, int], Iterator[np.ndarray]]
                   ) -> Callable[[TrainState, Iterable[Batch]], dict[str, float]]:
    """``evaluate(state, batches)`` of a conditional generator on MNIST-like data: how often
    the domain classifier recognises the class each sample was asked for, overall and per
    class ({} for unconditional models or other data). ``sample`` must ask for the
    classes 0, 1, ..., k-1, 0, ... in every chunk of ``config.eval_batch_size``."""

    def evaluate(state: TrainState, batches: Iterable[Batch]) -> dict[str, float]:
        del batches
        extractor = domain_extractor_for(config, image_shape) if config.num_classes else None
        if extractor is None:
            return {}
        draws = sample(state, rng.stream(config.seed, "eval_metrics"), config.eval_samples)
        return sample_class_accuracy(draws, config, extractor)

    return evaluate


def sample_class_accuracy(draws: Iterable[np.ndarray], config, extractor: Callable,
                          prefix: str = "test/domain_") -> dict[str, float]:
    """``{prefix}class_accuracy`` (and ``_<c>`` per class): how often ``extractor``'s
    classifier names the class each of the conditional samples ``draws`` was asked for;
    the draws ask for 0, 1, ..., k-1, 0, ... in every chunk of ``config.eval_batch_size``
    (the order of the tasks' ``sample``)."""
    k = config.num_classes
    probs = np.concatenate([extractor(x)[1] for x in draws])
    asked = np.arange(len(probs)) % config.eval_batch_size % k
    hit = probs.argmax(-1) == asked
    per_class = {f"{prefix}class_accuracy_{c}": float(hit[asked == c].mean())
                 for c in range(k) if np.any(asked == c)}
    return {f"{prefix}class_accuracy": float(hit.mean()), **per_class}
