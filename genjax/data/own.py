"""A researcher's own images as a tfds dataset: ``folder:<path>`` and ``npz:<path>``.

The source is prepared once, by tfds's own `tfds.dataset_builders.store_as_tfds_dataset`,
into ``<data_dir>/own_data/<kind>-<12 hex>/1.0.0`` (``data_dir``: ``config.data_dir``, or
tfds's default), and from then on it is read like any tfds dataset, through the same
pipeline as ``mnist5k`` (`genjax.data.pipeline`).

Layout and order:

- ``folder:``: image files (``.png``, ``.jpg``/``.jpeg``, ``.bmp``, ``.gif``; hidden files
  and other files are ignored). Images in subfolders are labelled by their top subfolder,
  the classes in sorted name order (``0 .. k-1``, their names kept in the ``ClassLabel``);
  images directly in the folder are unlabelled. A folder holding exactly a ``train/`` and
  a ``test/`` subfolder has its splits given (each laid out as above).
- ``npz:``: ``images`` uint8 [N, H, W, C] (or [N, H, W]: one channel) and optionally
  ``labels``, integers >= 0 [N].
- Order: a folder's images by file name (the name without its folders, in code-point
  order, ties by their path); an ``.npz``'s in array order. Without given splits the
  last ``ceil(N / 5)`` in that order are the test split. Keys are the positions in that
  order (train first), which is how the embedded mnist5k is written, so mnist5k's digits
  exported in its order give its batches bit for bit.

Unlabelled data has no ``label`` feature; the pipeline serves label 0 for every image
(`genjax.data.pipeline._decoded`).

What is prepared: every image converted to ``channels`` (None: as stored, then all
images must have the same count; 1 or 3: alpha dropped, RGB to grey by
`tf.image.rgb_to_grayscale`, grey to RGB repeated), centre-cropped or padded to ``crop``
when set, then, with ``image_size``, centre-cropped to a square on its short side and
resized (bilinear, antialiased, as the pipeline resizes) to ``image_size``. An image
smaller than ``image_size`` is refused unless ``upscale``. Images of different sizes
need ``image_size``. The conversion happens here, once, so the prepared dataset has one
static shape (the memory source needs it) and the options are part of its key.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import time
import zipfile
from typing import Callable, Iterator

import numpy as np
from PIL import Image

from genjax.data import _tensorflow  # noqa: F401  (first: quiet, without Keras)
import tensorflow as tf
import tensorflow_datasets as tfds

from genjax.report import info

KINDS = ("folder", "npz")
BAD_IMAGES = ("stop", "skip")
NAME = "own_data"  # the tfds dataset; each prepared source is one of its configs
# The preparation's format: bump it when what a source prepares into changes.
VERSION = "1.0.0"
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif")
SPLITS = ("train", "test")
_MARK = "\ngenjax: "  # the description's line that holds what the preparation skipped


class OwnDataError(ValueError):
    """The own data cannot be used as it is (layout, arrays, images); the message names
    the file and what to do."""


@dataclasses.dataclass(frozen=True)
class Preparation:
    """The options that change what a source prepares into (part of its fingerprint)."""

    channels: int | None = None
    image_size: int | None = None
    crop: int | None = None
    upscale: bool = False


def parse(name: str) -> tuple[str, str] | None:
    """``(kind, path)`` of an own-data dataset name (``folder:<path>``, ``npz:<path>``,
    ``~`` expanded), None for a tfds name."""
    kind, sep, path = name.partition(":")
    if not sep or kind not in KINDS:
        return None
    return kind, os.path.expanduser(path)


def _image_files(root: str) -> list[str]:
    """The image files under ``root``, as sorted '/'-separated relative paths (hidden
    files and folders left out)."""
    found = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        rel = os.path.relpath(folder, root)
        for f in files:
            if not f.startswith(".") and f.lower().endswith(IMAGE_EXTENSIONS):
                found.append(f if rel == "." else f"{rel}/{f}".replace(os.sep, "/"))
    return sorted(found)


def _source_files(kind: str, path: str) -> list[str]:
    """The files a source's content is read from, relative to ``path`` ("" for an .npz)."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"{kind}:{path} does not exist; give the path of "
                                f"{'a folder of images' if kind == 'folder' else 'an .npz file'}.")
    if kind == "npz":
        if not os.path.isfile(path):
            raise OwnDataError(f"npz:{path} is not a file; save arrays with "
                               f"numpy.savez(path, images=..., labels=...).")
        return [""]
    if not os.path.isdir(path):
        raise OwnDataError(f"folder:{path} is not a folder (for an array file use npz:{path}).")
    files = _image_files(path)
    if not files:
        raise OwnDataError(f"folder:{path} holds no images ({', '.join(IMAGE_EXTENSIONS)}); "
                           f"put image files in it or in one subfolder per class.")
    return files


_FINGERPRINTS: dict[tuple, str] = {}


def fingerprint(kind: str, path: str, prep: Preparation) -> str:
    """SHA-256 (hex) of what a source prepares into: every file's relative path and bytes,
    the kind, `VERSION` and the `Preparation` options.

    A content hash, not a path or a date: the same images moved, copied or touched keep
    their fingerprint (not prepared again, the same `dataset_id`), and any changed,
    added, removed or renamed image (a name sets the order, the split and the label)
    gives a new one, so the source is prepared again and a run started on the old data
    refuses to resume on it. Remembered per process while the files' sizes and times
    are unchanged, so that asking again reads no image.
    """
    files = _source_files(kind, path)
    stats = tuple((f, *_stat(os.path.join(path, f) if f else path)) for f in files)
    key = (kind, os.path.abspath(path), prep, stats)
    if key not in _FINGERPRINTS:
        h = hashlib.sha256(json.dumps([kind, VERSION, dataclasses.asdict(prep)]).encode())
        for f in files:
            with open(os.path.join(path, f) if f else path, "rb") as fh:
                content = fh.read()
            h.update(f"{f}\0{len(content)}\0".encode())
            h.update(content)
        _FINGERPRINTS[key] = h.hexdigest()
    return _FINGERPRINTS[key]


def _stat(path: str) -> tuple[int, int, int]:
    """Size, modification time and inode: what changes when a file is written or replaced."""
    s = os.stat(path)
    return s.st_size, s.st_mtime_ns, s.st_ino


def dataset_id(name: str, prep: Preparation) -> str:
    """``<kind>-<first 12 hex of the fingerprint>``: the prepared dataset's tfds config and
    its identity (resume checks, cached reference features)."""
    kind, path = parse(name)
    return _id(kind, fingerprint(kind, path, prep))


def _id(kind: str, fp: str) -> str:
    """The `dataset_id` of a source of ``kind`` with the fingerprint ``fp``."""
    return f"{kind}-{fp[:12]}"


# ---------------------------------------------------------------------------- images


def resize(image: tf.Tensor, size: int) -> tf.Tensor:
    """uint8 [(B,) H, W, C] -> [(B,) size, size, C], bilinear and antialiased, rounded."""
    image = tf.image.resize(image, (size, size), method="bilinear", antialias=True)
    return tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8)


def to_channels(image: tf.Tensor, channels: int) -> tf.Tensor:
    """uint8 [..., c] (static c: 1 grey, 2 grey+alpha, 3 RGB, 4 RGBA) -> [..., channels]
    (1 or 3): alpha dropped, RGB to grey by `tf.image.rgb_to_grayscale`, grey repeated."""
    c = image.shape[-1]
    if c in (2, 4):
        image = image[..., :c - 1]
    if channels == 1 and image.shape[-1] == 3:
        image = tf.image.rgb_to_grayscale(image)
    elif channels == 3 and image.shape[-1] == 1:
        image = tf.image.grayscale_to_rgb(image)
    return image


def _fit(image: tf.Tensor, crop: int | None, size: int | None) -> tf.Tensor:
    """Centre-crop (or pad) to ``crop``, then centre-crop to the short side and resize to
    ``size`` (an image already ``size`` square is left as it is); [H, W, C] or a batch
    [B, H, W, C] of one size."""
    if crop:
        image = tf.image.resize_with_crop_or_pad(image, crop, crop)
    if size:
        h, w = tf.shape(image)[-3], tf.shape(image)[-2]
        s = tf.minimum(h, w)
        image = tf.image.crop_to_bounding_box(image, (h - s) // 2, (w - s) // 2, s, s)
        image = tf.cond(tf.equal(s, size), lambda: image, lambda: resize(image, size))
    return image


def _converter(prep: Preparation) -> Callable[[np.ndarray], np.ndarray]:
    """``convert(images)``: stored uint8 [B, H, W, c] images (one size) as prepared ones;
    one compiled TensorFlow function per channel count ``c``, the identity when the
    options change nothing."""
    if prep == Preparation():
        return lambda images: images
    compiled = {}

    def convert(images: np.ndarray) -> np.ndarray:
        c = images.shape[-1]
        if c not in compiled:
            def f(x):
                x = to_channels(x, prep.channels) if prep.channels else x
                return _fit(x, prep.crop, prep.image_size)
            compiled[c] = tf.function(f, autograph=False, input_signature=[
                tf.TensorSpec([None, None, None, c], tf.uint8)])
        return compiled[c](tf.constant(images)).numpy()

    return convert


def read_image(path: str) -> np.ndarray:
    """An image file as uint8 [H, W, C], decoded by Pillow: C = 1 (grey), 2 (grey and
    alpha), 3 (RGB) or 4 (RGBA); palette images expanded, 1-bit ones to grey, 16-bit
    ones scaled to 8 bits, other modes (CMYK, YCbCr, ...) to RGB; a GIF's first frame.

    Raises:
      Whatever Pillow raises for a file it cannot decode (OSError and others).
    """
    with Image.open(path) as im:
        im.load()
        if im.mode == "1":
            im = im.convert("L")
        elif im.mode in ("P", "PA"):
            im = im.convert("RGBA" if im.mode == "PA" or "transparency" in im.info else "RGB")
        elif im.mode.startswith("I"):  # 16-bit grey ("I;16", or "I" holding 0..65535)
            wide = np.asarray(im, np.int64)
            return np.clip(np.round(wide / 257), 0, 255).astype(np.uint8)[..., None]
        elif im.mode not in ("L", "LA", "RGB", "RGBA"):
            im = im.convert("RGB")
        image = np.asarray(im, np.uint8)
    return image[..., None] if image.ndim == 2 else image


def _unreadable(where: str, file: str, reason: str, note: str) -> OwnDataError:
    """The one-line error for an unreadable image ``file`` of the source ``where`` with
    ``config.bad_images='stop'``; ``note`` follows the way out."""
    return OwnDataError(f"{where}: {file} is not a readable image ({reason}); fix or remove "
                        f"it, or set --config.bad_images=skip {note}.")


def _reason(error: Exception) -> str:
    """``Type: the first line of its message`` (at most 200 characters of it)."""
    return f"{type(error).__name__}: {(str(error).splitlines() or [''])[0][:200]}"


def _read_all(root: str, names: list[str]) -> tuple[dict[str, tuple], list[tuple[str, str]]]:
    """({name: stored shape} of the readable images, [(name, why)] of the others): every
    image decoded once, so that a damaged file is found before anything is written."""
    shapes, bad = {}, []
    for name in names:
        try:
            shapes[name] = read_image(os.path.join(root, name)).shape
        except Exception as e:  # noqa: BLE001  (Pillow raises OSError, SyntaxError, ValueError...)
            bad.append((name, _reason(e)))
    return shapes, bad


def _prepared_shape(shape: tuple[int, int, int], prep: Preparation) -> tuple[int, int, int]:
    """The [H, W, C] an image of the stored ``shape`` is prepared into."""
    h, w, c = shape
    if prep.crop:
        h = w = prep.crop
    if prep.image_size:
        h = w = prep.image_size
    c = prep.channels or c
    return h, w, c


def _check_shapes(names: list[str], shapes: list[tuple[int, int, int]], where: str,
                  prep: Preparation) -> tuple[int, int, int]:
    """The prepared shape shared by every image; `OwnDataError` naming the files when
    images are too small for ``image_size``, or differ in channels or size."""
    for name, (h, w, _) in zip(names, shapes):
        short = prep.crop or min(h, w)
        if prep.image_size and short < prep.image_size and not prep.upscale:
            raise OwnDataError(
                f"{where}: {name} is {h}x{w}, smaller than config.image_size="
                f"{prep.image_size}; set --config.upscale=True to enlarge small images, or a "
                f"smaller --config.image_size.")
    first = shapes[0]
    for name, shape in zip(names, shapes):
        if not prep.channels and shape[2] != first[2]:
            raise OwnDataError(
                f"{where}: images differ in channels ({names[0]} has {first[2]}, {name} has "
                f"{shape[2]}); set --config.image_channels=1 or 3 to convert them all.")
        if _prepared_shape(shape, prep)[:2] != _prepared_shape(first, prep)[:2]:
            raise OwnDataError(
                f"{where}: images differ in size ({names[0]} is {first[0]}x{first[1]}, {name} "
                f"is {shape[0]}x{shape[1]}); set --config.image_size (centre-crop to a square, "
                f"then resize).")
    return _prepared_shape(first, prep)


# ---------------------------------------------------------------------------- sources


@dataclasses.dataclass
class _Source:
    """A source read for preparation: each split's examples in order, as (name, label or
    None); ``load(name)`` gives its stored uint8 [H, W, C] image, ``shapes`` each one's
    shape; the class names (``()``: unlabelled; None: labels ``0 .. num_classes - 1``
    without names) and the unreadable files left out, with why."""

    splits: dict[str, list[tuple[str, int | None]]]
    load: Callable[[str], np.ndarray]
    shapes: dict[str, tuple[int, int, int]]
    classes: tuple[str, ...] | None
    num_classes: int = 0
    skipped: list[tuple[str, str]] = dataclasses.field(default_factory=list)


def _split_last_fifth(examples: list, where: str) -> dict[str, list]:
    """The documented split rule: the last ``ceil(N / 5)`` examples (in order) are test."""
    if len(examples) < 2:
        raise OwnDataError(f"{where} has {len(examples)} usable image(s); it needs at least 2 "
                           f"(the last fifth is the test split).")
    n_test = math.ceil(len(examples) / 5)
    return {"train": examples[:-n_test], "test": examples[-n_test:]}


def _by_name(files: list[str]) -> list[str]:
    """The documented order: by file name without its folders, ties by the path."""
    return sorted(files, key=lambda f: (f.rsplit("/", 1)[-1], f))


def _folder_layout(files: list[str], where: str
                   ) -> tuple[dict[str, list[tuple[str, str | None]]], tuple[str, ...]]:
    """(split, or "" when not given -> its (file, class folder or None) in order, the class
    names) of a folder's image files."""
    top = {f.split("/", 1)[0] for f in files if "/" in f}
    if {"train", "test"} <= top or top in ({"train"}, {"test"}):
        loose = sorted(f for f in files if not f.startswith(("train/", "test/")))
        if top != {"train", "test"} or loose:
            raise OwnDataError(
                f"{where}: a folder with given splits holds exactly train/ and test/ "
                f"({'it also has ' + loose[0] if loose else 'one of them is missing'}); "
                f"add the missing one, or remove both to split by the documented rule.")
        parts = {s: [f[len(s) + 1:] for f in files if f.startswith(s + "/")] for s in SPLITS}
    else:
        parts = {"": files}
    out, classes = {}, set()
    for part, names in parts.items():
        nested = [f for f in names if "/" in f]
        loose = [f for f in names if "/" not in f]
        if nested and loose:
            raise OwnDataError(
                f"{where}: {part + '/' if part else ''}{loose[0]} lies beside class folders "
                f"such as {nested[0].split('/')[0]}/; put every image in a class folder, or "
                f"none (unlabelled).")
        classes.update(f.split("/", 1)[0] for f in nested)
        out[part] = [(f"{part}/{f}" if part else f, f.split("/", 1)[0] if "/" in f else None)
                     for f in _by_name(names)]
    return out, tuple(sorted(classes))


def _read_folder(path: str, bad_images: str) -> _Source:
    """A folder source: every image decoded once, for its shape and to find unreadable
    ones (stop: `OwnDataError` naming the first; skip: left out and listed), then laid
    out and split."""
    where = f"folder:{path}"
    parts, classes = _folder_layout(_image_files(path), where)
    shapes, skipped = _read_all(path, [name for items in parts.values() for name, _ in items])
    if skipped and bad_images == "stop":
        raise _unreadable(where, *skipped[0], "to leave such files out")
    examples = {p: [(n, None if c is None else classes.index(c)) for n, c in items
                    if n in shapes] for p, items in parts.items()}
    if "" in examples:
        examples = _split_last_fifth(examples[""], where)
    elif not examples["train"] or not examples["test"]:
        raise OwnDataError(f"{where}: train/ and test/ each need at least one usable image.")
    return _Source(examples, lambda name: read_image(os.path.join(path, name)), shapes,
                   classes, len(classes), skipped)


def _read_npz(path: str) -> _Source:
    """An .npz source: ``images`` and optional ``labels`` checked, then split."""
    where = f"npz:{path}"
    if not zipfile.is_zipfile(path):
        raise OwnDataError(f"{where} is not an .npz (not a zip archive); save arrays with "
                           f"numpy.savez(path, images=..., labels=...).")
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except Exception as e:  # not a zip, truncated, an object array
        raise OwnDataError(f"{where} is not a readable .npz ({_reason(e)}); save it with "
                           f"numpy.savez(path, images=..., labels=...).") from None
    images, labels = arrays.get("images"), arrays.get("labels")
    if images is None:
        raise OwnDataError(f"{where} has no 'images' array (it has: "
                           f"{', '.join(sorted(arrays)) or 'none'}); save uint8 images "
                           f"[N, H, W, C] as numpy.savez(path, images=..., labels=...).")
    if images.dtype != np.uint8:
        raise OwnDataError(f"{where}: 'images' must be uint8 pixels 0..255, got {images.dtype}; "
                           f"convert with np.clip(np.round(x * 255), 0, 255).astype(np.uint8) "
                           f"from [0, 1].")
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4 or not 1 <= images.shape[-1] <= 4:
        raise OwnDataError(f"{where}: 'images' must be [N, H, W, C] with C 1 to 4 (or "
                           f"[N, H, W]), got shape {arrays['images'].shape}.")
    if labels is not None:
        if not np.issubdtype(labels.dtype, np.integer) or labels.shape != images.shape[:1]:
            raise OwnDataError(f"{where}: 'labels' must be integers [N] = [{len(images)}], got "
                               f"{labels.dtype} {labels.shape}.")
        if len(labels) and labels.min() < 0:
            raise OwnDataError(f"{where}: 'labels' must be integers >= 0, got {labels.min()}.")
    names = [f"images[{i}]" for i in range(len(images))]
    order = [(n, None if labels is None else int(labels[i])) for i, n in enumerate(names)]
    return _Source(_split_last_fifth(order, where), lambda name: images[int(name[7:-1])],
                   dict.fromkeys(names, images.shape[1:]), None if labels is not None else (),
                   int(labels.max()) + 1 if labels is not None and len(labels) else 0)


# ---------------------------------------------------------------------------- tfds


def _features(shape: tuple[int, int, int], source: _Source) -> tfds.features.FeaturesDict:
    """The prepared dataset's features: ``image`` of ``shape``, and ``label`` when labelled."""
    features = {"image": tfds.features.Image(shape=shape)}
    if source.classes:
        features["label"] = tfds.features.ClassLabel(names=list(source.classes))
    elif source.classes is None:
        features["label"] = tfds.features.ClassLabel(num_classes=source.num_classes)
    return tfds.features.FeaturesDict(features)


def _examples(source: _Source, split: str, offset: int, prep: Preparation
              ) -> Iterator[tuple[int, dict]]:
    """(key, example) of a split, keyed by position (train first), as mnist5k is; the
    images converted in runs of up to 256 of one stored shape."""
    convert, items = _converter(prep), source.splits[split]
    for start in range(0, len(items), 256):
        chunk = items[start:start + 256]
        stored = [source.load(name) for name, _ in chunk]
        runs = []  # consecutive images of one shape
        for image in stored:
            if runs and runs[-1][-1].shape == image.shape:
                runs[-1].append(image)
            else:
                runs.append([image])
        images = [image for run in runs for image in convert(np.stack(run))]
        for i, ((_, label), image) in enumerate(zip(chunk, images), offset + start):
            yield i, {"image": image} if label is None else {"image": image, "label": label}


def _prepare(kind: str, path: str, root: str, fp: str, prep: Preparation,
             bad_images: str) -> tfds.core.DatasetBuilder:
    """Read, check and store a source (fingerprint ``fp``) in the data directory ``root``
    with `tfds.dataset_builders.store_as_tfds_dataset`."""
    name, start = f"{kind}:{path}", time.monotonic()
    source = _read_npz(path) if kind == "npz" else _read_folder(path, bad_images)
    names = [n for split in SPLITS for n, _ in source.splits[split]]
    shape = _check_shapes(names, [tuple(source.shapes[n]) for n in names], name, prep)
    n_train = len(source.splits["train"])
    record = {"source": name, "fingerprint": fp, "skipped": source.skipped}
    tfds.display_progress_bar(False)
    try:
        builder = tfds.dataset_builders.store_as_tfds_dataset(
            name=NAME, version=VERSION, config=_id(kind, fp), data_dir=root,
            features=_features(shape, source),
            split_datasets={"train": _examples(source, "train", 0, prep),
                            "test": _examples(source, "test", n_train, prep)},
            description=f"{name}, prepared by genjax.data.own.{_MARK}{json.dumps(record)}")
    finally:
        tfds.display_progress_bar(True)
    skipped = (f"; skipped {len(source.skipped)} unreadable image(s) (config.bad_images="
               f"'skip'): {', '.join(n for n, _ in source.skipped[:3])}"
               f"{' ...' if len(source.skipped) > 3 else ''}") if source.skipped else ""
    info(f"Prepared {name} ({n_train} train, {len(names) - n_train} test images, "
         f"{'x'.join(map(str, shape))}) as {builder.data_dir} in "
         f"{time.monotonic() - start:.1f} s{skipped}.")
    return builder


def prepared_folder(name: str, data_dir: str | None, prep: Preparation) -> str:
    """Where the source ``name`` is (or would be) prepared: ``<data_dir or tfds's
    default>/own_data/<dataset_id>/<VERSION>``."""
    return _folder(_root(data_dir), dataset_id(name, prep))


def _root(data_dir: str | None) -> str:
    """The tfds data directory a source is prepared in: ``data_dir``, or tfds's default."""
    return os.fspath(data_dir or tfds.core.constants.get_default_data_dir())


def _folder(root: str, config: str) -> str:
    """The folder of the preparation ``config`` (a `dataset_id`) in the data directory ``root``."""
    return os.path.join(root, NAME, config, VERSION)


def builder(name: str, data_dir: str | None, prep: Preparation, bad_images: str = "stop"
            ) -> tfds.core.DatasetBuilder:
    """The prepared tfds builder of own data ``name`` (``folder:...``, ``npz:...``),
    prepared first when no preparation of this fingerprint exists in ``data_dir``.

    Raises:
      FileNotFoundError: the path does not exist.
      OwnDataError: the data cannot be used as it is (the message names the file), or
        ``bad_images='stop'`` and the existing preparation left unreadable images out.
    """
    if bad_images not in BAD_IMAGES:
        raise ValueError(f"bad_images must be one of {', '.join(BAD_IMAGES)}, got {bad_images!r}.")
    kind, path = parse(name)
    fp, root = fingerprint(kind, path, prep), _root(data_dir)  # the files listed once
    folder = _folder(root, _id(kind, fp))
    if os.path.exists(os.path.join(folder, "dataset_info.json")):
        built = tfds.builder_from_directory(folder)
    else:
        built = _prepare(kind, path, root, fp, prep, bad_images)
    skipped = json.loads(built.info.description.split(_MARK, 1)[-1]).get("skipped", [])
    if skipped and bad_images == "stop":
        raise _unreadable(name, *skipped[0], f"(its preparation in {folder} left "
                                             f"{len(skipped)} such file(s) out)")
    return built
