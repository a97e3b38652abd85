"""The one input pipeline: tfds -> tf.data -> batches.

Every experiment reads data through `train_iterator` (infinite, shuffled, resumable)
and `eval_iterator` (one ordered pass that keeps the last partial batch). Batches are
dicts of arrays: ``image`` float32 [B, H, W, C], ``label`` int32 [B] and, for
evaluation, ``mask`` float32 [B] (1 for real examples, 0 for padding).

Resuming: the data order is a pure function of (seed, step). Epoch ``e`` is the
cached split shuffled with seed ``(seed, e)``; the batch for step ``s`` starts at
example ``s * host_batch``. A run resumed at step ``s`` therefore sees exactly the
batches an uninterrupted run would, at the cost of skipping less than one epoch.

Two sources serve training batches (``DataSpec.source``):

- ``tfds``: tf.data shuffles, batches and preprocesses on its own threads and hands
  over NumPy batches.
- ``memory``: the decoded split is read once and kept on the first local device as
  uint8. Each step gathers its batch there and preprocesses it in one small compiled
  call, dispatched a step ahead. Nothing runs beside the step, so on a CPU no pipeline
  thread takes a core from it. The order comes from the same tf.data shuffle, applied
  to the indices, so both sources serve the same batches. The exception is
  ``binarize_dynamic``, whose Bernoulli draws use `jax.random` here instead of
  TensorFlow's generator, with 16 random bits per pixel (`_bernoulli`): the same
  distribution to within 2^-16 in each pixel's probability, different bits.

``auto`` (the default) takes ``memory`` when the decoded split fits in
`MEMORY_LIMIT_BYTES`, ``tfds`` otherwise.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import os
import shutil
from typing import Iterator

import jax
import jax.numpy as jnp
import numpy as np

from genjax.data import _tensorflow  # noqa: F401  (first: quiet, without Keras)
import tensorflow as tf
import tensorflow_datasets as tfds

from genjax.data import SOURCES, Batch
from genjax.data import mixtures, mnist5k  # noqa: F401  (register their tfds builders)
from genjax.data import network, own

OFFLINE_ALTERNATIVE = "mnist5k"
OFFLINE = ("mnist5k", "gaussian_mixtures")  # generated or embedded: prepared without internet
PREPROCESS_MODES = ("unit", "symmetric", "binarize_static", "binarize_dynamic", "raw")
# ``auto`` serves a split from device memory when its decoded arrays fit in this
# (mnist5k: 3 MB, MNIST: 47 MB, CIFAR-10: 154 MB; CelebA at 64x64: 2 GB goes to tfds).
MEMORY_LIMIT_BYTES = 1 << 30
# Datasets whose images are not square get a centre crop before resizing
# (the usual 140x140 face crop for CelebA, then resized to 64x64).
DEFAULT_GEOMETRY = {"celeb_a": (140, 64)}
_STATIC_BINARIZATION_SEED = 1234  # fixed so every run sees the same binary images
# tfds's own download_and_prepare, taken at import on purpose (no environment switch):
# `tfds.testing.mock_data` patches this very class attribute while it is active, so
# reading it when used would take the mock for tfds's own (`_downloads_for_real`).
_TFDS_DOWNLOAD = inspect.getattr_static(tfds.core.DatasetBuilder, "download_and_prepare")


class DatasetUnavailableError(OSError):
    """A dataset is neither prepared locally nor downloadable."""


class DatasetDamagedError(OSError):
    """A prepared dataset's files do not hold what its metadata says (cut short, corrupt)."""


def _checked(batches: Iterator, builder: tfds.core.DatasetBuilder) -> Iterator:
    """``batches``, with TensorFlow's errors for damaged files (a raw ``DataLossError``,
    a count mismatch) turned into one `DatasetDamagedError` naming the files."""
    try:
        yield from batches
    except Exception as e:  # not `except (tf.errors...)`: evaluated on GeneratorExit at exit
        if not isinstance(e, (tf.errors.DataLossError, tf.errors.FailedPreconditionError)):
            raise
        reason = (e.message.splitlines() or [""])[0].split("}}")[-1].split("[Op:")[0]
        reason = reason.strip().rstrip(".")[:300]
        raise DatasetDamagedError(
            f"Dataset {builder.name!r} in {builder.data_dir} is damaged ({reason}). Re-prepare "
            f"it: move that folder away and run again (mnist5k is rebuilt offline, other "
            f"datasets are downloaded again).") from None


@dataclasses.dataclass(frozen=True)
class DataSpec:
    """What to read and how to turn it into model inputs.

    Attributes:
      name: a tfds dataset name (``mnist5k``, ``mnist``, ``fashion_mnist``,
        ``cifar10``, ``celeb_a``, ...), or own data: ``folder:<path>`` (a folder of
        images) or ``npz:<path>`` (arrays), see `genjax.data.own`.
      data_dir: tfds data directory (None: tfds's default, ``~/tensorflow_datasets``).
      preprocess: ``unit`` ([0, 1]), ``symmetric`` ([-1, 1]), ``binarize_static``
        (one fixed Bernoulli sample per image), ``binarize_dynamic`` (a fresh
        Bernoulli sample every time an image is served) or ``raw`` (float features as
        stored, e.g. the 2-D points of ``gaussian_mixtures``).
      crop: centre-crop to ``crop x crop`` before resizing (None: dataset default).
      image_size: resize to ``image_size x image_size`` (None: dataset default/native).
      download: let tfds download and prepare a missing dataset.
      seed: seed of the shuffle order and of dynamic binarisation.
      source: how training batches are served: ``tfds``, ``memory`` or ``auto`` (see
        the module docstring).
      channels: convert images to 1 (grey) or 3 (RGB) channels (None: as stored).
      upscale: own data only: let images smaller than ``image_size`` be enlarged (else
        refused, naming the file).
      bad_images: own data only: an unreadable image file ``stop``s the preparation
        (naming it) or is ``skip``ped (counted).
    """

    name: str = "mnist5k"
    data_dir: str | None = None
    preprocess: str = "unit"
    crop: int | None = None
    image_size: int | None = None
    download: bool = True
    seed: int = 0
    source: str = "auto"
    channels: int | None = None
    upscale: bool = False
    bad_images: str = "stop"

    def __post_init__(self):
        if self.preprocess not in PREPROCESS_MODES:
            raise ValueError(
                f"Unknown preprocess mode {self.preprocess!r}; valid: {', '.join(PREPROCESS_MODES)}.")
        if self.source not in SOURCES:
            raise ValueError(f"Unknown data source {self.source!r}; valid: {', '.join(SOURCES)}.")
        if self.channels not in (None, 1, 3):
            raise ValueError(f"channels must be 1, 3 or None (as stored), got {self.channels!r}.")
        if self.bad_images not in own.BAD_IMAGES:
            raise ValueError(f"bad_images must be one of {', '.join(own.BAD_IMAGES)}, got "
                             f"{self.bad_images!r}.")


def spec_fields(config) -> dict:
    """The `DataSpec` fields a run's specs share, from its config (a field it lacks keeps
    the default): dataset, data_dir, seed, download and the geometry and own-data fields."""
    return dict(name=config.dataset, data_dir=config.get("data_dir"), seed=config.seed,
                download=config.get("download", True), crop=config.get("crop"),
                image_size=config.get("image_size"), channels=config.get("image_channels"),
                upscale=config.get("upscale", False),
                bad_images=config.get("bad_images", "stop"))


def _preparation(spec: DataSpec) -> own.Preparation:
    return own.Preparation(spec.channels, spec.image_size, spec.crop, spec.upscale)


def dataset_id(spec: DataSpec) -> str:
    """The identity of ``spec``'s data: a tfds dataset's name (``"mnist5k"``); for own
    data ``"folder-<12 hex>"`` / ``"npz-<12 hex>"``, the start of its content fingerprint
    (`genjax.data.own.fingerprint`: the files' bytes and relative paths and the options
    that change what is prepared). Two sources share an id only when they prepare into
    the same examples. Runs record it (a resume on changed data is refused); cached
    reference features and domain classifiers are keyed by it.

    Raises:
      FileNotFoundError, OwnDataError: own data that is missing or unusable.
    """
    return own.dataset_id(spec.name, _preparation(spec)) if own.parse(spec.name) else spec.name


def get_builder(spec: DataSpec) -> tfds.core.DatasetBuilder:
    """Return a prepared tfds builder, preparing (or downloading) it if needed; own data
    (``folder:``, ``npz:``) is prepared offline by `genjax.data.own`, once per fingerprint.

    Raises:
      DatasetUnavailableError: the dataset is not prepared and cannot be downloaded;
        the message names the offline alternative.
    """
    if own.parse(spec.name):
        return own.builder(spec.name, spec.data_dir, _preparation(spec), spec.bad_images)
    try:
        builder = tfds.builder(spec.name, data_dir=spec.data_dir)
    except tfds.core.registered.DatasetNotFoundError as e:
        raise DatasetUnavailableError(
            f"Unknown dataset {spec.name!r}. The embedded offline dataset is "
            f"{OFFLINE_ALTERNATIVE!r}.") from None  # tfds's message lists its whole registry
    except ValueError:  # tfds cannot parse the name ("", "a/b/c:d")
        raise DatasetUnavailableError(f"{spec.name!r} is not a dataset name; the embedded "
                                      f"offline dataset is {OFFLINE_ALTERNATIVE!r}.") from None
    # is_prepared() alone warns about a folder that is not there: nothing prepared is no news
    prepared = builder.data_path.exists() and builder.is_prepared()
    if prepared or spec.name.split("/")[0] in OFFLINE:
        builder.download_and_prepare()  # no-op when prepared; offline for these
        return builder
    if not spec.download:
        raise DatasetUnavailableError(
            f"Dataset {spec.name!r} is not prepared in {builder.data_dir_root} and downloads are "
            f"disabled. Prepare it on a machine with internet, or use the embedded offline "
            f"dataset {OFFLINE_ALTERNATIVE!r} (--config.dataset={OFFLINE_ALTERNATIVE}).")
    offline = _downloads_for_real(builder) and network.unreachable(
        network.download_hosts(_download_urls(builder)))
    if offline:  # seconds, where tfds would retry for minutes
        raise DatasetUnavailableError(_not_downloaded(spec, builder, offline))
    before = _preparation_entries(builder)
    try:
        builder.download_and_prepare()
    except BaseException as e:  # network, DNS, missing optional deps: all mean "not here"
        _remove_new_entries(builder, before)  # Ctrl-C included: no partial folders left
        if not isinstance(e, Exception):
            raise
        reason = f"{type(e).__name__}: {(str(e).splitlines() or [''])[0][:300]}"
        raise DatasetUnavailableError(_not_downloaded(spec, builder, reason)) from e
    return builder


def _not_downloaded(spec: DataSpec, builder: tfds.core.DatasetBuilder, reason: str) -> str:
    """The one-line message for a dataset that could not be downloaded, and what to do."""
    return (f"Dataset {spec.name!r} could not be downloaded ({reason}). Without internet use "
            f"the embedded offline dataset {OFFLINE_ALTERNATIVE!r} "
            f"(--config.dataset={OFFLINE_ALTERNATIVE}), or copy a prepared "
            f"{builder.data_dir_root}/{spec.name} here.")


def _downloads_for_real(builder: tfds.core.DatasetBuilder) -> bool:
    """Whether ``builder.download_and_prepare`` is tfds's own: `tfds.testing.mock_data` and
    test doubles replace it, download nothing, and so need no network to be probed."""
    return inspect.getattr_static(builder, "download_and_prepare") is _TFDS_DOWNLOAD


def _download_urls(builder: tfds.core.DatasetBuilder) -> list[str]:
    """The URLs the builder's registered checksums name ([] when it registers none: then
    nothing is probed and tfds finds out itself)."""
    try:
        return list(builder.url_infos or {})
    except Exception:  # a builder without a checksums file, or with an unreadable one
        return []


def _preparation_entries(builder: tfds.core.DatasetBuilder) -> set[str]:
    """The data directory's ``downloads`` folder and the dataset's folder, and what is in
    them: where tfds puts its partial files (``downloads/<name>/*.tmp.*``,
    ``downloads/extracted``, ``<name>/incomplete.*``). Nothing else in the data directory
    (another dataset being prepared beside this one) is looked at."""
    root = os.fspath(builder.data_dir_root)
    entries = set()
    for folder in (os.path.join(root, "downloads"), os.path.join(root, builder.name)):
        if os.path.isdir(folder):
            entries.add(folder)
            entries.update(os.path.join(folder, e) for e in os.listdir(folder))
    return entries


def _remove_new_entries(builder: tfds.core.DatasetBuilder, before: set[str]) -> None:
    """Remove what a failed preparation added to `_preparation_entries` (folders first,
    so that their contents go with them)."""
    for path in sorted(_preparation_entries(builder) - before, key=len):
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)
        elif os.path.lexists(path):
            os.remove(path)


def host_batch_size(global_batch_size: int, num_devices: int | None = None,
                    process_count: int | None = None) -> int:
    """The per-host share of a global batch, checking it splits evenly.

    Args:
      global_batch_size: examples per step over all hosts and devices.
      num_devices: devices over which the batch is split (default: all devices).
      process_count: number of hosts (default: ``jax.process_count()``).

    Raises:
      ValueError: the batch does not split evenly over devices or hosts.
    """
    num_devices = jax.device_count() if num_devices is None else num_devices
    process_count = jax.process_count() if process_count is None else process_count
    if global_batch_size <= 0 or global_batch_size % num_devices:
        raise ValueError(
            f"Global batch size {global_batch_size} is not divisible by the number of devices "
            f"({num_devices}); choose a multiple of {num_devices}.")
    if global_batch_size % process_count:
        raise ValueError(
            f"Global batch size {global_batch_size} is not divisible by the number of hosts "
            f"({process_count}).")
    return global_batch_size // process_count


def split_for_devices(batch: Batch, num_devices: int) -> Batch:
    """Reshape every array of a host batch to [num_devices, B // num_devices, ...]."""
    size = len(next(iter(batch.values())))
    if size % num_devices:
        raise ValueError(f"Batch of {size} does not split evenly over {num_devices} devices.")
    return {k: v.reshape(num_devices, size // num_devices, *v.shape[1:]) for k, v in batch.items()}


def _geometry(spec: DataSpec) -> tuple[int | None, int | None]:
    """(crop, size) applied when decoding; None for own data (applied when prepared)."""
    if own.parse(spec.name):
        return None, None
    crop, size = DEFAULT_GEOMETRY.get(spec.name, (None, None))
    return (spec.crop if spec.crop is not None else crop,
            spec.image_size if spec.image_size is not None else size)


def _decoded(builder: tfds.core.DatasetBuilder, split: str, spec: DataSpec, *,
             per_process: bool, cache: bool) -> tf.data.Dataset:
    """The split's examples as uint8 {image, label}, cropped/resized, and with ``cache``
    cached in memory (for datasets read over and over); with ``per_process``, only this
    host's share of them (`tfds.split_for_jax_process`).

    Static binarisation happens here, once per example (keyed by its index in the
    split), so it is the same sample in every epoch and every run.
    """
    if per_process and jax.process_count() > 1:
        split = tfds.split_for_jax_process(split)
    # tfds would cache small datasets on its own (try_autocache); the cache is ours to place
    ds = builder.as_dataset(split=split, shuffle_files=False,
                            read_config=tfds.ReadConfig(try_autocache=False))
    crop, size = _geometry(spec)
    has_label = "label" in builder.info.features

    def decode(index, ex):
        image = ex["image"]
        if spec.channels and image.shape[-1] != spec.channels:
            image = own.to_channels(image, spec.channels)
        if crop is not None:
            image = tf.image.resize_with_crop_or_pad(image, crop, crop)
        if size is not None and tuple(image.shape[:2]) != (size, size):
            image = own.resize(image, size)
        if spec.preprocess == "binarize_static":
            u = tf.random.stateless_uniform(
                tf.shape(image), seed=tf.stack([tf.constant(_STATIC_BINARIZATION_SEED, tf.int64), index]))
            image = tf.cast(u * 255.0 < tf.cast(image, tf.float32), tf.uint8) * 255
        label = tf.cast(ex["label"], tf.int32) if has_label else tf.constant(0, tf.int32)
        return {"image": image, "label": label}

    ds = ds.enumerate().map(decode, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.cache() if cache else ds


def _to_model_inputs(batch: dict, spec: DataSpec, batch_index) -> dict:
    """uint8 batch -> float32 model inputs according to ``spec.preprocess``."""
    if spec.preprocess == "raw":
        return {"image": tf.cast(batch["image"], tf.float32), "label": batch["label"]}
    x = tf.cast(batch["image"], tf.float32) / 255.0
    if spec.preprocess == "symmetric":
        x = x * 2.0 - 1.0
    elif spec.preprocess == "binarize_dynamic":
        seed = tf.stack([tf.constant(spec.seed, tf.int64), tf.cast(batch_index, tf.int64)])
        x = tf.cast(tf.random.stateless_uniform(tf.shape(x), seed=seed) < x, tf.float32)
    return {"image": x, "label": batch["label"]}


def num_examples(spec: DataSpec, split: str) -> int:
    """Number of examples in a split (all hosts together)."""
    return get_builder(spec).info.splits[split].num_examples


def _count(builder: tfds.core.DatasetBuilder, split: str, examples: tf.data.Dataset) -> int:
    """This host's number of examples: from the dataset's metadata on one host, counted
    (one pass) when several hosts share the split or the metadata has none (mocks)."""
    if jax.process_count() == 1:
        try:
            return builder.info.splits[split].num_examples
        except KeyError:
            pass
    return int(examples.reduce(0, lambda c, _: c + 1))


def train_iterator(spec: DataSpec, split: str, *, global_batch_size: int, start_step: int = 0,
                   shuffle_buffer: int = 60_000) -> Iterator[Batch]:
    """Infinite iterator of shuffled host batches, starting at batch ``start_step``.

    Args:
      spec: dataset, preprocessing and source (see the module docstring).
      split: tfds split name, e.g. ``"train"``.
      global_batch_size: batch over all hosts; each host yields its share.
      start_step: index of the first batch (the resumed step), see module docstring.
      shuffle_buffer: shuffle buffer; a full-split buffer gives a uniform permutation.
    """
    batch = host_batch_size(global_batch_size, num_devices=1)
    builder = get_builder(spec)
    examples = _decoded(builder, split, spec, per_process=True, cache=True)
    n = _count(builder, split, examples)
    if n < batch:
        raise ValueError(f"Split {split!r} of {spec.name!r} has {n} examples per host, "
                         f"fewer than the batch size {batch}.")
    buffer = min(n, shuffle_buffer)
    first_epoch, offset = divmod(start_step * batch, n)
    if serves_from_memory(spec, examples, n):
        orders = _epoch_orders(n, buffer, spec.seed, first_epoch)
        return _checked(_memory_batches(examples, n, batch, start_step, orders, spec), builder)

    def epoch(e):
        return examples.shuffle(buffer, seed=_shuffle_seed(spec.seed, e),
                                reshuffle_each_iteration=False)

    ds = tf.data.Dataset.range(first_epoch, 2**62).flat_map(epoch).skip(offset)
    ds = ds.batch(batch, drop_remainder=True)
    ds = tf.data.Dataset.zip(ds, tf.data.Dataset.range(start_step, 2**62))
    ds = ds.map(lambda b, i: _to_model_inputs(b, spec, i), num_parallel_calls=tf.data.AUTOTUNE)
    return _checked(iter(tfds.as_numpy(ds.prefetch(tf.data.AUTOTUNE))), builder)


def _shuffle_seed(seed: int, epoch) -> tf.Tensor:
    """The tf.data shuffle seed of ``epoch`` (an int or a scalar tensor)."""
    return tf.constant(seed, tf.int64) * 1_000_003 + tf.cast(epoch, tf.int64)


def serves_from_memory(spec: DataSpec, examples: tf.data.Dataset, n: int) -> bool:
    """Whether ``spec``'s training batches come from the memory source: asked for, or
    ``auto`` and the ``n`` decoded examples have static shapes and fit in
    `MEMORY_LIMIT_BYTES`."""
    if spec.source != "auto":
        return spec.source == "memory"
    size = 0
    for feature in examples.element_spec.values():
        if not feature.shape.is_fully_defined():
            return False
        size += n * feature.shape.num_elements() * feature.dtype.size
    return size <= MEMORY_LIMIT_BYTES


def _epoch_orders(n: int, buffer: int, seed: int, first_epoch: int) -> Iterator[np.ndarray]:
    """The order of the ``n`` examples in each epoch from ``first_epoch`` on: the tfds
    source's shuffle, applied to their indices (a tf.data shuffle's order depends on its
    seed and buffer, not on what it shuffles, so both sources serve the same examples)."""
    def epoch(e):
        return tf.data.Dataset.range(n).shuffle(buffer, seed=_shuffle_seed(seed, e),
                                                reshuffle_each_iteration=False)

    ds = tf.data.Dataset.range(first_epoch, 2**62).flat_map(epoch).batch(n)
    options = tf.data.Options()
    options.autotune.enabled = False  # computed when asked for, once per epoch: no threads
    return (o.astype(np.int32) for o in tfds.as_numpy(ds.with_options(options)))


def _memory_batches(examples: tf.data.Dataset, n: int, batch: int, start_step: int,
                    orders: Iterator[np.ndarray], spec: DataSpec) -> Iterator[dict]:
    """The memory source: ``examples`` read once onto the first local device; batch ``s``
    (from ``start_step`` on) is examples ``s * batch`` to ``(s + 1) * batch`` of the
    epochs laid end to end, each epoch in the next order of ``orders``.

    Each batch is dispatched one step ahead: its gather and preprocessing do not depend on
    the train step that runs before it, so the device may overlap them.
    """
    parts = list(tfds.as_numpy(examples.batch(8192)))
    held = jax.device_put({k: np.concatenate([p[k] for p in parts]) for k in parts[0]},
                          jax.local_devices()[0])
    key = jax.random.key(spec.seed)
    offset = start_step * batch % n
    order, step = next(orders), start_step
    ahead = None
    while True:
        index = order[offset:offset + batch]
        offset += batch
        if offset >= n:
            order, offset = next(orders), offset - n
            index = np.concatenate([index, order[:offset]])
        out = _serve(held, index, key, np.uint32(step), preprocess=spec.preprocess)
        if ahead is not None:
            yield ahead
        ahead = out
        step += 1


# pixel value -> model input, as `_to_model_inputs` computes it (IEEE division in NumPy;
# XLA would multiply by 1/255 instead and round some values differently)
_UNIT = np.arange(256, dtype=np.float32) / np.float32(255)
_SYMMETRIC = _UNIT * np.float32(2) - np.float32(1)
# preprocess -> the model input of each 8-bit value (for images given as levels k / 255)
LEVEL_VALUES = {"unit": _UNIT, "symmetric": _SYMMETRIC}


@functools.partial(jax.jit, static_argnames="preprocess")
def _serve(held: dict, index: jax.Array, key: jax.Array, batch_index: jax.Array, *,
           preprocess: str) -> dict:
    """Batch ``index`` of the held split as model inputs: equal to `_to_model_inputs`'s,
    except ``binarize_dynamic``, drawn by `_bernoulli` with ``fold_in(key, batch_index)``."""
    image, label = held["image"][index], held["label"][index]
    if preprocess == "raw":
        x = image.astype(jnp.float32)
    elif preprocess == "binarize_dynamic":
        x = _bernoulli(jax.random.fold_in(key, batch_index), image)
    else:
        x = jnp.asarray(_SYMMETRIC if preprocess == "symmetric" else _UNIT)[image]
    return {"image": x, "label": label}


def _bernoulli(key: jax.Array, image: jax.Array) -> jax.Array:
    """One Bernoulli draw per uint8 pixel ``v`` with probability ``ceil(65536 v / 255) / 65536``
    (``v / 255`` to within 2^-16; exactly 0 and 1 at the ends), as float32 0/1.

    Each pixel compares 16 random bits, so one 32-bit word serves two pixels, and the
    non-partitionable threefry makes two words per hash: 0.36 ms for a batch of 128
    digits on the 2-core CPU of docs/benchmarks.md, against 1.1 ms for one float uniform
    per pixel with the default threefry (the VAE's step takes 6.4 ms there).
    """
    n = image.size
    flat = jnp.pad(image.reshape(-1), (0, n % 2)).reshape(2, -1).astype(jnp.uint32)
    with jax.threefry_partitionable(False):
        words = jax.random.bits(key, flat.shape[1:], jnp.uint32)
    bits = jnp.stack([words >> 16, words & 0xFFFF])
    x = (bits * 255 < flat * 65536).astype(jnp.float32)
    return x.reshape(-1)[:n].reshape(image.shape)


def eval_iterator(spec: DataSpec, split: str, *, global_batch_size: int) -> Iterator[Batch]:
    """One ordered pass over a split; the last partial batch is padded and masked.

    Every batch has the same shape (so a jitted evaluation compiles once); ``mask``
    marks the real examples, and no example is ever dropped. Every host reads the whole
    split (each evaluates its own copy of the state; process 0 writes the results).
    """
    batch = host_batch_size(global_batch_size, num_devices=1, process_count=1)
    # Not cached: one pass, often left after its first batch (the loop's fixed
    # reconstruction inputs), where TensorFlow warns that a partial cache is discarded.
    builder = get_builder(spec)
    ds = _decoded(builder, split, spec, per_process=False, cache=False).batch(batch)
    ds = ds.enumerate().map(lambda i, b: _to_model_inputs(b, spec, i),
                            num_parallel_calls=tf.data.AUTOTUNE)
    for b in _checked(tfds.as_numpy(ds.prefetch(tf.data.AUTOTUNE)), builder):
        real = len(b["label"])
        pad = batch - real
        out = {k: np.concatenate([v, np.zeros((pad, *v.shape[1:]), v.dtype)]) if pad else v
               for k, v in b.items()}
        out["mask"] = (np.arange(batch) < real).astype(np.float32)
        yield out
