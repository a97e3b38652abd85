"""An offline feature extractor for MNIST-like data: a small CNN trained by the project.

Standard FID needs InceptionV3 weights that cannot be downloaded on offline machines;
a domain FID/IS computed with this classifier (trained on mnist5k's training split by
``genjax-train classifier``) works anywhere. Its 128-d penultimate activations
are the features for FID/KID/precision-recall, its softmax the class probabilities
for the Inception Score and mode coverage. Numbers from it are comparable only with
other numbers from the same weights.
"""

from __future__ import annotations

import hashlib
import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

from genjax.metrics.evaluation import Extractor, run_batched
from genjax.nn import layers

WEIGHTS_DIR = os.path.join(os.path.dirname(__file__), "weights", "mnist5k_classifier")
INPUT_SHAPE = (28, 28, 1)
NUM_CLASSES = 10


class DomainClassifier(nn.Module):
    """3x3 convs (32, then 64 x3 with stride 2), dense 128 (the features), dense 10."""

    @nn.compact
    def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Images [B, 28, 28, 1] in [0, 1] -> (logits [B, 10], features [B, 128])."""
        x = nn.relu(layers.Conv(32, (3, 3))(x))
        for _ in range(3):
            x = nn.relu(layers.Conv(64, (3, 3), strides=(2, 2))(x))
        features = nn.relu(nn.Dense(128)(x.reshape(x.shape[0], -1)))
        return nn.Dense(NUM_CLASSES)(features), features


def save_params(params, directory: str = WEIGHTS_DIR) -> str:
    """Write classifier parameters with orbax (replacing what is there)."""
    directory = os.path.abspath(directory)
    with ocp.StandardCheckpointer() as ckptr:
        ckptr.save(directory, params, force=True)
    return directory


def load_params(directory: str = WEIGHTS_DIR):
    """The trained classifier's parameters (shipped with genjax, or your own export)."""
    if not os.path.isdir(directory):
        raise FileNotFoundError(
            f"No domain-classifier weights at {directory}. Train and export them with "
            f"`genjax-train classifier --workdir=runs/classifier "
            f"--export_dir={directory}` (about a minute on a CPU).")
    abstract = jax.eval_shape(lambda: DomainClassifier().init(
        jax.random.key(0), jnp.zeros((1, *INPUT_SHAPE)))["params"])
    # A read-only file every process reads for itself, onto its own first device, with no
    # cross-host barrier.
    here = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    abstract = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=here),
                            abstract)
    me = jax.process_index()
    local = ocp.options.MultiprocessingOptions(primary_host=me, active_processes={me})
    with ocp.StandardCheckpointer(multiprocessing_options=local) as ckptr:
        return ckptr.restore(os.path.abspath(directory), abstract)


def check_images(images: np.ndarray) -> None:
    """Refuse images the classifier was not trained for (shape or range)."""
    if images.ndim != 4 or tuple(images.shape[1:]) != INPUT_SHAPE:
        raise ValueError(f"The domain classifier takes [N, 28, 28, 1] images, got "
                         f"{tuple(images.shape)}.")
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


def make_extractor(params=None, batch_size: int = 500) -> Extractor:
    """``extract(images) -> (features [N, 128], probs [N, 10])`` as float32 host arrays.

    Images are [N, 28, 28, 1] in [0, 1]; they are processed ``batch_size`` at a time
    with a fixed-shape jitted call (the last batch padded, its padding dropped).
    """
    params = load_params() if params is None else params
    model = DomainClassifier()

    @jax.jit
    def run(x):
        logits, features = model.apply({"params": params}, x)
        return features, jax.nn.softmax(logits)

    def extract(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        images = np.asarray(images, np.float32)
        check_images(images)
        return run_batched(run, images, batch_size)

    return Extractor(f"mnist5k_classifier-{fingerprint(params)}", extract)
