"""Offline feature extractors trained by the project: one small CNN per labelled dataset.

Standard FID needs InceptionV3 weights that cannot be downloaded on offline machines;
a domain FID/IS computed with a classifier of the run's own dataset works anywhere.
Its 128-d penultimate activations are the features for FID/KID/precision-recall, its
softmax the class probabilities for the Inception Score and mode coverage. Numbers
from one classifier are comparable only with other numbers from the same weights (the
extractor's name carries a hash of them).

Classifiers live in a registry of folders keyed by dataset id and image shape,
``<GENJAX_CACHE>/classifiers/<dataset_id>-<H>x<W>x<C>/`` (orbax parameters and
``classifier.json``), written by ``genjax-train classifier``. genjax ships one
entry, `WEIGHTS_DIR`: the mnist5k classifier, the built-in entry for ``mnist5k`` and
``mnist`` (the same digits) at 28x28x1, found before the cache so that every MNIST
number is made with the same weights.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

from genjax.metrics.evaluation import Extractor, cache_dir, run_batched
from genjax.nn import layers

WEIGHTS_DIR = os.path.join(os.path.dirname(__file__), "weights", "mnist5k_classifier")
INPUT_SHAPE = (28, 28, 1)  # the shipped classifier's
NUM_CLASSES = 10
BUILTIN = {("mnist5k", INPUT_SHAPE): WEIGHTS_DIR, ("mnist", INPUT_SHAPE): WEIGHTS_DIR}
META = "classifier.json"  # an entry's description, beside its orbax files
TRAIN_COMMAND = "genjax-train classifier"
# Stride-2 layers halve the feature map until its longer side is at most this.
FINAL_SIDE = 4


def downsamples(image_shape: tuple[int, ...]) -> int:
    """How many stride-2 convolutions the classifier of ``image_shape`` has: enough
    halvings ('SAME' padding: sides round up) to bring its longer side to `FINAL_SIDE` or
    less (28 -> 14 -> 7 -> 4: 3; 8x8: 1; 16x16: 2; 32x32: 3; 64x64: 4), so that the dense
    layer sees at most 4x4x64 inputs whatever the image size."""
    side = max(image_shape[:2])
    return max(0, math.ceil(math.log2(side / FINAL_SIDE))) if side > FINAL_SIDE else 0


class DomainClassifier(nn.Module):
    """3x3 convs (32, then `downsamples` x 64 with stride 2), dense 128 (the features),
    dense ``num_classes``. The default is the shipped mnist5k classifier (28x28x1, 10
    classes: three stride-2 layers), whose parameter tree every shape shares but for the
    number of stride-2 convs."""

    image_shape: tuple[int, int, int] = INPUT_SHAPE
    num_classes: int = NUM_CLASSES

    @nn.compact
    def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Images [B, H, W, C] in [0, 1] -> (logits [B, num_classes], features [B, 128])."""
        x = nn.relu(layers.Conv(32, (3, 3))(x))
        for _ in range(downsamples(self.image_shape)):
            x = nn.relu(layers.Conv(64, (3, 3), strides=(2, 2))(x))
        features = nn.relu(nn.Dense(128)(x.reshape(x.shape[0], -1)))
        return nn.Dense(self.num_classes)(features), features


@dataclasses.dataclass(frozen=True)
class Entry:
    """A registry entry: where a classifier's weights are and what it was trained on.

    Attributes:
      directory: the folder of orbax parameters and ``classifier.json``.
      name: what its extractor's name starts with (it keys cached reference features).
      dataset_id: `genjax.data.dataset_id` of the data it was trained on.
      image_shape: [H, W, C] of the images it takes.
      num_classes: its number of classes.
      test_accuracy: measured on the dataset's test split when it was exported.
      steps: training steps.
    """

    directory: str
    name: str
    dataset_id: str
    image_shape: tuple[int, int, int]
    num_classes: int
    test_accuracy: float | None = None
    steps: int | None = None

    def model(self) -> DomainClassifier:
        return DomainClassifier(self.image_shape, self.num_classes)


def entry_key(dataset_id: str, image_shape: tuple[int, ...]) -> str:
    """An entry's folder name: ``<dataset_id>-<H>x<W>x<C>`` (path separators replaced)."""
    safe = "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in dataset_id)
    return f"{safe}-{'x'.join(str(int(s)) for s in image_shape)}"


def registry_dir() -> str:
    """Where exported classifiers live: ``<GENJAX_CACHE or ~/.cache/genjax>/classifiers``."""
    return os.path.join(cache_dir(), "classifiers")


def entry_dir(dataset_id: str, image_shape: tuple[int, ...]) -> str:
    """The registry folder of the classifier of ``dataset_id`` at ``image_shape``."""
    return os.path.join(registry_dir(), entry_key(dataset_id, image_shape))


def read_entry(directory: str) -> Entry:
    """The entry in ``directory`` (its ``classifier.json``); FileNotFoundError if none."""
    path = os.path.join(directory, META)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"No domain classifier in {directory} (no {META}). Train and export one with "
            f"`{TRAIN_COMMAND} --config.dataset=<dataset> --workdir=runs/classifier`.")
    with open(path) as f:
        meta = json.load(f)
    return Entry(os.path.abspath(directory), meta["name"], meta["dataset_id"],
                 tuple(meta["image_shape"]), int(meta["num_classes"]),
                 meta.get("test_accuracy"), meta.get("steps"))


def find(dataset_id: str, image_shape: tuple[int, ...]) -> Entry | None:
    """The classifier of ``dataset_id`` at ``image_shape``: the built-in entry (`BUILTIN`)
    first, then the registry (`entry_dir`); None when there is none."""
    shape = tuple(int(s) for s in image_shape)
    directory = BUILTIN.get((dataset_id, shape)) or entry_dir(dataset_id, shape)
    if not os.path.isfile(os.path.join(directory, META)):
        return None
    entry = read_entry(directory)
    return entry if entry.image_shape == shape else None


def export(params, directory: str, *, dataset_id: str, image_shape: tuple[int, ...],
           num_classes: int, test_accuracy: float | None, steps: int | None) -> Entry:
    """Write a trained classifier as a registry entry in ``directory`` (replacing what is
    there): its parameters with orbax, then ``classifier.json``, so that a folder with
    the description always has complete weights."""
    directory = save_params(params, directory)
    entry = Entry(directory, f"{entry_key(dataset_id, image_shape)}_classifier", dataset_id,
                  tuple(int(s) for s in image_shape), int(num_classes),
                  None if test_accuracy is None else float(test_accuracy),
                  None if steps is None else int(steps))
    if jax.process_index() == 0:
        meta = {k: v for k, v in dataclasses.asdict(entry).items() if k != "directory"}
        tmp = os.path.join(directory, f".{META}.{os.getpid()}.tmp")
        with open(tmp, "w") as f:
            json.dump(meta, f, indent=1)
        os.replace(tmp, os.path.join(directory, META))
    return entry


def save_params(params, directory: str = WEIGHTS_DIR) -> str:
    """Write classifier parameters with orbax (replacing what is there)."""
    directory = os.path.abspath(directory)
    with ocp.StandardCheckpointer() as ckptr:
        ckptr.save(directory, params, force=True)
    return directory


def load_params(directory: str = WEIGHTS_DIR, model: DomainClassifier | None = None):
    """The trained parameters of ``model`` (default: the shipped mnist5k classifier) in
    ``directory`` (default: the shipped weights)."""
    model = DomainClassifier() if model is None else model
    if not os.path.isdir(directory):
        raise FileNotFoundError(
            f"No domain-classifier weights at {directory}. Train and export them with "
            f"`{TRAIN_COMMAND} --workdir=runs/classifier --export_dir={directory}` (about a "
            f"minute on a CPU for mnist5k).")
    abstract = jax.eval_shape(lambda: model.init(
        jax.random.key(0), jnp.zeros((1, *model.image_shape)))["params"])
    # A read-only file every process reads for itself, onto its own first device, with no
    # cross-host barrier.
    here = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    abstract = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=here),
                            abstract)
    me = jax.process_index()
    local = ocp.options.MultiprocessingOptions(primary_host=me, active_processes={me})
    with ocp.StandardCheckpointer(multiprocessing_options=local) as ckptr:
        return ckptr.restore(os.path.abspath(directory), abstract)


def check_images(images: np.ndarray, image_shape: tuple[int, ...] = INPUT_SHAPE) -> None:
    """Refuse images the classifier was not trained for (shape or range)."""
    if images.ndim != 4 or tuple(images.shape[1:]) != tuple(image_shape):
        raise ValueError(f"The domain classifier takes [N, {', '.join(map(str, image_shape))}] "
                         f"images, got {tuple(images.shape)}.")
    bad = int(np.sum(~np.isfinite(images)))
    if bad:
        raise ValueError(f"The domain classifier takes finite images; {bad} of {images.size} "
                         f"values are NaN or Inf.")
    lo, hi = float(np.min(images)), float(np.max(images))
    if lo < -1e-3 or hi > 1 + 1e-3:
        raise ValueError(f"The domain classifier takes images in [0, 1], got values in "
                         f"[{lo:.3g}, {hi:.3g}] (map [-1, 1] images with (x + 1) / 2).")


def fingerprint(params) -> str:
    """A short hash of the parameter values: names the weights behind cached features."""
    h = hashlib.sha256()
    for leaf in jax.tree.leaves(params):
        h.update(np.asarray(leaf).tobytes())
    return h.hexdigest()[:12]


def make_extractor(params=None, batch_size: int = 500, *, model: DomainClassifier | None = None,
                   name: str = "mnist5k_classifier") -> Extractor:
    """``extract(images) -> (features [N, 128], probs [N, num_classes])`` as float32 host
    arrays, named ``<name>-<fingerprint of params>``.

    ``model`` (default: the shipped mnist5k classifier, whose weights ``params``
    defaults to) fixes the image shape; images are [N, H, W, C] in [0, 1], processed
    ``batch_size`` at a time with a fixed-shape jitted call (the last batch padded, its
    padding dropped).
    """
    model = DomainClassifier() if model is None else model
    params = load_params(model=model) if params is None else params

    @jax.jit
    def run(x):
        logits, features = model.apply({"params": params}, x)
        return features, jax.nn.softmax(logits)

    def extract(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        images = np.asarray(images, np.float32)
        check_images(images, model.image_shape)
        return run_batched(run, images, batch_size)

    return Extractor(f"{name}-{fingerprint(params)}", extract)


def entry_extractor(entry: Entry) -> Extractor:
    """The extractor of a registry entry, loaded once per process for each version of it
    (an entry exported again in the same folder is loaded again)."""
    stamp = os.stat(os.path.join(entry.directory, META)).st_mtime_ns
    return _loaded(entry, stamp)


@functools.cache
def _loaded(entry: Entry, stamp: int) -> Extractor:
    del stamp  # part of the cache key only
    model = entry.model()
    return make_extractor(load_params(entry.directory, model), model=model, name=entry.name)
