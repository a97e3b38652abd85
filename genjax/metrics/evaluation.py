"""Every sample-quality number for a set of generated images against a set of real ones."""

from __future__ import annotations

import dataclasses
import hashlib
import os
from typing import Callable

import numpy as np
from absl import logging

from genjax.metrics import scores, statistics
from genjax.report import info


@dataclasses.dataclass(frozen=True)
class Extractor:
    """A named feature extractor: images [N, H, W, C] in [0, 1] -> (features, class probs).

    ``name`` identifies the network and its weights (it keys cached reference features).
    """

    name: str
    fn: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]

    def __call__(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.fn(images)


def run_batched(fn: Callable[[np.ndarray], tuple], images: np.ndarray, batch_size: int
                ) -> tuple[np.ndarray, ...]:
    """``fn`` over fixed-size batches (one compilation; the last batch zero-padded and
    its padding dropped), outputs concatenated as host arrays."""
    outs = []
    for i in range(0, len(images), batch_size):
        chunk = images[i:i + batch_size]
        padded = np.pad(chunk, [(0, batch_size - len(chunk))] + [(0, 0)] * (chunk.ndim - 1))
        outs.append([np.asarray(o)[:len(chunk)] for o in fn(padded)])
    return tuple(np.concatenate(parts) for parts in zip(*outs))


def cache_dir() -> str:
    """Where reference features live: ``$GENJAX_CACHE`` or ``~/.cache/genjax``."""
    return os.environ.get("GENJAX_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "genjax")


def _features_digest(features: np.ndarray) -> str:
    h = hashlib.sha256(f"{features.dtype.str}|{features.shape}".encode())
    h.update(np.ascontiguousarray(features).tobytes())
    return h.hexdigest()


def _cached(path: str, key: str) -> tuple[np.ndarray | None, str]:
    """A cache entry's features if it is intact and holds ``key``'s, else (None, why)."""
    try:
        with np.load(path, allow_pickle=False) as f:
            entry = {k: f[k] for k in ("features", "key", "sha256")}
    except FileNotFoundError:
        return None, ""
    except Exception as e:  # truncated, not an archive, an item missing
        return None, f"unreadable: {type(e).__name__}"
    features = entry["features"]
    if str(entry["key"]) != key:
        return None, f"it holds {str(entry['key'])!r}"
    if features.ndim != 2 or _features_digest(features) != str(entry["sha256"]):
        return None, "its checksum does not match its features"
    return features, ""


def reference_features(extractor: Extractor, key: str, images: Callable[[], np.ndarray]) -> np.ndarray:
    """Features of real images, computed once per (``key``, extractor) and cached on disk.

    ``key`` names the dataset, split, preprocessing and count (e.g.
    ``mnist5k-test-unit-1000``); the extractor's name names its weights (a hash).
    ``images`` is only called on a cache miss. A cache entry (``.npz``) holds the
    features, that full key and a SHA-256 of the features; an entry that is unreadable,
    holds another key or fails its checksum is recomputed (with a one-line warning),
    never trusted.
    """
    full_key = f"{key}|{extractor.name}"
    path = os.path.join(cache_dir(), "reference", f"{key}-{extractor.name}.npz")
    features, why = _cached(path, full_key)
    if features is not None:
        return features
    if why:
        logging.warning("Cached reference features %s are not usable (%s); recomputing them.",
                        path, why)
    features = np.asarray(extractor(images())[0])
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.{os.getpid()}.tmp.npz"
    np.savez(tmp, features=features, key=np.array(full_key),
             sha256=np.array(_features_digest(features)))
    os.replace(tmp, path)  # atomic: a concurrent or killed run never leaves half a file
    info(f"Cached reference features in {path}")
    return features


def sample_quality(fake_images: np.ndarray, real_images: np.ndarray, extractor: Extractor, *,
                   prefix: str = "domain/", **kwargs) -> dict[str, float]:
    """FID, IS, KID, precision/recall and mode coverage of fakes against reals.

    Both image sets are [N, H, W, C] in [0, 1]; ``extractor`` maps them to features and
    class probabilities (`genjax.metrics.domain.make_extractor` offline). Keys carry
    ``prefix`` so that numbers from different extractors are never mixed up.
    """
    fake_features, fake_probs = extractor(fake_images)
    return quality_from_features(extractor(real_images)[0], fake_features, fake_probs,
                                 prefix=prefix, **kwargs)


def quality_from_features(real_features: np.ndarray, fake_features: np.ndarray,
                          fake_probs: np.ndarray, *, prefix: str = "domain/",
                          kid_subsets: int = 100, kid_subset_size: int = 1000,
                          is_splits: int = 10) -> dict[str, float]:
    """`sample_quality` from extracted features (e.g. cached reference features)."""
    is_mean, is_std = scores.inception_score(fake_probs, splits=min(is_splits, len(fake_probs)))
    kid_mean, kid_std = scores.kid(real_features, fake_features, num_subsets=kid_subsets,
                                   subset_size=kid_subset_size)
    precision, recall = scores.precision_recall(real_features, fake_features)
    coverage = scores.mode_coverage(fake_probs)
    return {f"{prefix}{k}": float(v) for k, v in {
        "fid": statistics.fid(real_features, fake_features), "is": is_mean, "is_std": is_std,
        "kid": kid_mean, "kid_std": kid_std, "precision": precision, "recall": recall,
        "classes_covered": coverage["classes_covered"],
        "min_class_share": float(coverage["class_share"].min()),
        "class_kl_from_uniform": coverage["kl_from_uniform"]}.items()}
