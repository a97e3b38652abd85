"""The FID InceptionV3 in Flax: the TF 'inception-2015-12-05' graph as ported by pytorch-fid.

Standard FID and Inception Score are defined by one particular network: TensorFlow's
2015 InceptionV3 graph, which differs from torchvision's InceptionV3 in its pooling
(average pools exclude padding; the last block max-pools) and has 1008 logits.
pytorch-fid re-implemented it (``FIDInceptionA/C/E_1/E_2``) and published its
weights (``pt_inception-2015-12-05-6726825d.pth``). This module is that network:

- pool3 features: the 2048-d global average of ``Mixed_7c`` (FID, KID, precision/recall);
- logits: the 1008-way ``fc`` layer on pool3 (Inception Score uses their softmax).

Input handling (pytorch-fid's): images in [0, 1] are quantised to 8 bits (as saved
PNGs would be), grey images repeated to 3 channels, resized to 299x299 bilinearly
(half-pixel centres, no antialiasing: torch's ``align_corners=False``) and mapped to
[-1, 1].

Weights cannot be downloaded here. Convert the published ``.pth`` once where torch is
installed (``python -m genjax.cli.convert_inception``) and pass the ``.npz``; it is
read with ``allow_pickle=False``, and its recorded source hash is checked.
"""

from __future__ import annotations

import hashlib
import os
import zipfile
from typing import Mapping, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from genjax.metrics.evaluation import Extractor, run_batched

PTH_NAME = "pt_inception-2015-12-05-6726825d.pth"
PTH_URL = ("https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/" + PTH_NAME)
PTH_SHA256_PREFIX = "6726825d"  # torch hub convention: the file name carries its hash prefix
SOURCE_KEY = "__source_sha256__"
FEATURE_DIM, NUM_LOGITS, SIZE = 2048, 1008, 299


class BasicConv(nn.Module):
    """Conv (no bias) + BatchNorm (eps 1e-3, running statistics) + ReLU."""

    features: int
    kernel: Sequence[int]
    strides: Sequence[int] = (1, 1)
    padding: Sequence[int] = (0, 0)

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        (ph, pw) = self.padding
        x = nn.Conv(self.features, tuple(self.kernel), tuple(self.strides),
                    padding=((ph, ph), (pw, pw)), use_bias=False, name="conv")(x)
        return nn.relu(nn.BatchNorm(use_running_average=True, epsilon=1e-3, name="bn")(x))


def _avg_pool(x):
    return nn.avg_pool(x, (3, 3), (1, 1), ((1, 1), (1, 1)), count_include_pad=False)


def _max_pool(x, stride=2):
    return nn.max_pool(x, (3, 3), (stride, stride))


class InceptionA(nn.Module):
    pool_features: int

    @nn.compact
    def __call__(self, x):
        b1 = BasicConv(64, (1, 1), name="branch1x1")(x)
        b5 = BasicConv(48, (1, 1), name="branch5x5_1")(x)
        b5 = BasicConv(64, (5, 5), padding=(2, 2), name="branch5x5_2")(b5)
        b3 = BasicConv(64, (1, 1), name="branch3x3dbl_1")(x)
        b3 = BasicConv(96, (3, 3), padding=(1, 1), name="branch3x3dbl_2")(b3)
        b3 = BasicConv(96, (3, 3), padding=(1, 1), name="branch3x3dbl_3")(b3)
        bp = BasicConv(self.pool_features, (1, 1), name="branch_pool")(_avg_pool(x))
        return jnp.concatenate([b1, b5, b3, bp], -1)


class InceptionB(nn.Module):
    @nn.compact
    def __call__(self, x):
        b3 = BasicConv(384, (3, 3), (2, 2), name="branch3x3")(x)
        bd = BasicConv(64, (1, 1), name="branch3x3dbl_1")(x)
        bd = BasicConv(96, (3, 3), padding=(1, 1), name="branch3x3dbl_2")(bd)
        bd = BasicConv(96, (3, 3), (2, 2), name="branch3x3dbl_3")(bd)
        return jnp.concatenate([b3, bd, _max_pool(x)], -1)


class InceptionC(nn.Module):
    channels_7x7: int

    @nn.compact
    def __call__(self, x):
        c = self.channels_7x7
        row, col = dict(kernel=(1, 7), padding=(0, 3)), dict(kernel=(7, 1), padding=(3, 0))
        b1 = BasicConv(192, (1, 1), name="branch1x1")(x)
        b7 = BasicConv(c, (1, 1), name="branch7x7_1")(x)
        b7 = BasicConv(c, **row, name="branch7x7_2")(b7)
        b7 = BasicConv(192, **col, name="branch7x7_3")(b7)
        bd = BasicConv(c, (1, 1), name="branch7x7dbl_1")(x)
        bd = BasicConv(c, **col, name="branch7x7dbl_2")(bd)
        bd = BasicConv(c, **row, name="branch7x7dbl_3")(bd)
        bd = BasicConv(c, **col, name="branch7x7dbl_4")(bd)
        bd = BasicConv(192, **row, name="branch7x7dbl_5")(bd)
        bp = BasicConv(192, (1, 1), name="branch_pool")(_avg_pool(x))
        return jnp.concatenate([b1, b7, bd, bp], -1)


class InceptionD(nn.Module):
    @nn.compact
    def __call__(self, x):
        b3 = BasicConv(192, (1, 1), name="branch3x3_1")(x)
        b3 = BasicConv(320, (3, 3), (2, 2), name="branch3x3_2")(b3)
        b7 = BasicConv(192, (1, 1), name="branch7x7x3_1")(x)
        b7 = BasicConv(192, (1, 7), padding=(0, 3), name="branch7x7x3_2")(b7)
        b7 = BasicConv(192, (7, 1), padding=(3, 0), name="branch7x7x3_3")(b7)
        b7 = BasicConv(192, (3, 3), (2, 2), name="branch7x7x3_4")(b7)
        return jnp.concatenate([b3, b7, _max_pool(x)], -1)


class InceptionE(nn.Module):
    """``max_pool``: the last block (FIDInceptionE_2) max-pools its pool branch."""

    max_pool: bool = False

    @nn.compact
    def __call__(self, x):
        row, col = dict(kernel=(1, 3), padding=(0, 1)), dict(kernel=(3, 1), padding=(1, 0))
        b1 = BasicConv(320, (1, 1), name="branch1x1")(x)
        b3 = BasicConv(384, (1, 1), name="branch3x3_1")(x)
        b3 = jnp.concatenate([BasicConv(384, **row, name="branch3x3_2a")(b3),
                              BasicConv(384, **col, name="branch3x3_2b")(b3)], -1)
        bd = BasicConv(448, (1, 1), name="branch3x3dbl_1")(x)
        bd = BasicConv(384, (3, 3), padding=(1, 1), name="branch3x3dbl_2")(bd)
        bd = jnp.concatenate([BasicConv(384, **row, name="branch3x3dbl_3a")(bd),
                              BasicConv(384, **col, name="branch3x3dbl_3b")(bd)], -1)
        pooled = nn.max_pool(x, (3, 3), (1, 1), ((1, 1), (1, 1))) if self.max_pool else _avg_pool(x)
        bp = BasicConv(192, (1, 1), name="branch_pool")(pooled)
        return jnp.concatenate([b1, b3, bd, bp], -1)


class FIDInceptionV3(nn.Module):
    """Images [B, H, W, 3] in [-1, 1] (H, W >= 75; 299 for the standard metrics) ->
    (pool3 features [B, 2048], logits [B, 1008])."""

    @nn.compact
    def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        x = BasicConv(32, (3, 3), (2, 2), name="Conv2d_1a_3x3")(x)
        x = BasicConv(32, (3, 3), name="Conv2d_2a_3x3")(x)
        x = _max_pool(BasicConv(64, (3, 3), padding=(1, 1), name="Conv2d_2b_3x3")(x))
        x = BasicConv(80, (1, 1), name="Conv2d_3b_1x1")(x)
        x = _max_pool(BasicConv(192, (3, 3), name="Conv2d_4a_3x3")(x))
        x = InceptionA(32, name="Mixed_5b")(x)
        x = InceptionA(64, name="Mixed_5c")(x)
        x = InceptionA(64, name="Mixed_5d")(x)
        x = InceptionB(name="Mixed_6a")(x)
        for name, c in (("Mixed_6b", 128), ("Mixed_6c", 160), ("Mixed_6d", 160), ("Mixed_6e", 192)):
            x = InceptionC(c, name=name)(x)
        x = InceptionD(name="Mixed_7a")(x)
        x = InceptionE(name="Mixed_7b")(x)
        x = InceptionE(max_pool=True, name="Mixed_7c")(x)
        pool3 = jnp.mean(x, axis=(1, 2))
        return pool3, nn.Dense(NUM_LOGITS, name="fc")(pool3)


def preprocess(images: jax.Array) -> jax.Array:
    """[B, H, W, 1 or 3] in [0, 1] -> [B, 299, 299, 3] in [-1, 1] (see the module docstring)."""
    x = jnp.round(jnp.clip(images, 0.0, 1.0) * 255.0) / 255.0
    if x.shape[-1] == 1:
        x = jnp.repeat(x, 3, axis=-1)
    x = jax.image.resize(x, (x.shape[0], SIZE, SIZE, 3), "bilinear", antialias=False)
    return 2.0 * x - 1.0


# --- weights: pytorch-fid state-dict names <-> Flax variables --------------------------

_BN = {"scale": "weight", "bias": "bias", "mean": "running_mean", "var": "running_var"}


def torch_name(collection: str, path: Sequence[str]) -> str:
    """The pytorch-fid state-dict key of a Flax variable (collection + module path)."""
    *modules, leaf = path
    if modules[-1] == "fc":
        return ".".join([*modules, "weight" if leaf == "kernel" else "bias"])
    if modules[-1] == "conv":
        return ".".join([*modules, "weight"])
    del collection  # BatchNorm: scale/bias are params, mean/var batch_stats
    return ".".join([*modules, _BN[leaf]])


def to_flax(collection: str, path: Sequence[str], array: np.ndarray) -> np.ndarray:
    """Torch layout -> Flax layout (conv OIHW -> HWIO, linear (out, in) -> (in, out))."""
    if path[-2] == "conv":
        return np.transpose(array, (2, 3, 1, 0))
    if path[-2] == "fc" and path[-1] == "kernel":
        return array.T
    return array


def variable_shapes() -> dict:
    """Abstract {"params", "batch_stats"} of the network (no compute)."""
    return jax.eval_shape(lambda: FIDInceptionV3().init(jax.random.key(0),
                                                         jnp.zeros((1, 75, 75, 3))))


def variables_from_state_dict(state: Mapping[str, np.ndarray]) -> dict:
    """Flax variables from a pytorch-fid state dict (NumPy arrays by torch key)."""
    def one(path, shape):
        keys = [p.key for p in path]
        name = torch_name(keys[0], keys[1:])
        if name not in state:
            raise KeyError(f"Inception weights lack {name!r} (needed for {'/'.join(keys)}).")
        value = to_flax(keys[0], keys[1:], np.asarray(state[name], np.float32))
        if value.shape != shape.shape:
            raise ValueError(f"Inception weight {name!r} has shape {value.shape} after conversion; "
                             f"expected {shape.shape}.")
        return jnp.asarray(value)

    return jax.tree_util.tree_map_with_path(one, variable_shapes())


def file_sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def load_variables(npz_path: str | None) -> dict:
    """Flax variables from the converted ``.npz`` (no pickle), its source hash checked."""
    if not npz_path or not os.path.exists(npz_path):
        raise FileNotFoundError(
            f"Inception weights not found ({npz_path!r}). Download {PTH_URL} where there is "
            "internet, convert it where torch is installed with `python -m "
            f"genjax.cli.convert_inception --pth={PTH_NAME} --out=inception_fid.npz`, and pass "
            "the .npz (e.g. --inception_weights=inception_fid.npz). Offline, the domain "
            "classifier of the run's dataset (`genjax-train classifier` trains one) "
            "gives domain FID/IS instead.")
    try:
        with np.load(npz_path, allow_pickle=False) as f:
            state = {k: f[k] for k in f.files}
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as e:
        raise ValueError(f"{npz_path} is not a converted Inception .npz (not a readable NumPy "
                         f"archive: {type(e).__name__}); make one with "
                         f"genjax/cli/convert_inception.py.") from None
    source = str(state.pop(SOURCE_KEY, ""))
    if not source.startswith(PTH_SHA256_PREFIX):
        raise ValueError(f"{npz_path} was not converted from {PTH_NAME}: its recorded source "
                         f"SHA-256 is {source or 'missing'!r}, expected one starting with "
                         f"{PTH_SHA256_PREFIX!r}. FID is only comparable with those weights.")
    return variables_from_state_dict(state)


def make_extractor(npz_path: str | None, batch_size: int = 50) -> Extractor:
    """``extract(images in [0, 1]) -> (pool3 [N, 2048], softmax of the 1008 logits)``."""
    variables = load_variables(npz_path)
    model = FIDInceptionV3()

    @jax.jit
    def run(x):
        pool3, logits = model.apply(variables, preprocess(x))
        return pool3, jax.nn.softmax(logits)

    def extract(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        images = np.asarray(images, np.float32)
        if images.ndim != 4 or images.shape[-1] not in (1, 3):
            raise ValueError(f"Inception takes [N, H, W, 1 or 3] images, got {images.shape}.")
        if not np.all(np.isfinite(images)):
            raise ValueError("Inception takes finite images; these hold NaN or Inf.")
        return run_batched(run, images, batch_size)

    return Extractor(f"inception2015-{file_sha256(npz_path)[:12]}", extract)
