"""Inception Score, KID, improved precision/recall and class-histogram mode coverage.

Host-side float64 NumPy functions of features or class probabilities, so they agree
with any reference implementation to rounding and never depend on a device.
"""

from __future__ import annotations

import numpy as np
from scipy.special import xlogy


def _as_2d(x, name: str) -> np.ndarray:
    x = np.asarray(x, np.float64)
    if x.ndim != 2:
        raise ValueError(f"{name} must be [n, d], got shape {x.shape}.")
    return x


def inception_score(probs, splits: int = 10) -> tuple[float, float]:
    """Inception Score (Salimans et al. 2016): exp E_x KL(p(y|x) || p(y)), per split.

    Args:
      probs: ``[n, classes]`` class probabilities (rows sum to 1).
      splits: the samples are cut into this many equal consecutive parts (the standard
        protocol, default 10); p(y) is each part's mean prediction.

    Returns:
      (mean, std) of the per-split scores.
    """
    p = _as_2d(probs, "probs")
    if not 1 <= splits <= len(p):
        raise ValueError(f"splits must be in [1, {len(p)}] for {len(p)} samples, got {splits}.")
    if np.any(p < 0) or not np.allclose(p.sum(axis=1), 1.0, atol=1e-3):
        raise ValueError("probs must be non-negative rows summing to 1 (softmax outputs).")
    scores = []
    for part in np.array_split(p, splits):
        marginal = part.mean(axis=0, keepdims=True)
        kl = np.sum(xlogy(part, part) - xlogy(part, marginal), axis=1)
        scores.append(np.exp(kl.mean()))
    return float(np.mean(scores)), float(np.std(scores))


def _polynomial_kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return (x @ y.T / x.shape[1] + 1.0) ** 3


def kid(features_a, features_b, *, num_subsets: int = 100, subset_size: int = 1000,
        seed: int = 0) -> tuple[float, float]:
    """Kernel Inception Distance (Binkowski et al. 2018): unbiased MMD^2, cubic kernel.

    MMD^2 is estimated on ``num_subsets`` random subsets of ``subset_size`` samples from
    each set (capped at the smaller set's size; when that is both sets whole, one
    subset and a std of 0); returns (mean, std) over subsets. The
    estimator is unbiased, so two samples of one distribution give values around 0
    (negative ones included).
    """
    a, b = _as_2d(features_a, "features_a"), _as_2d(features_b, "features_b")
    m = min(subset_size, len(a), len(b))
    if m < 2:
        raise ValueError(f"KID needs at least 2 samples per set, got {len(a)} and {len(b)}.")
    if m == len(a) == len(b):
        num_subsets = 1  # every "subset" is the whole of both sets
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(num_subsets):
        x = a[rng.choice(len(a), m, replace=False)]
        y = b[rng.choice(len(b), m, replace=False)]
        kxx, kyy, kxy = _polynomial_kernel(x, x), _polynomial_kernel(y, y), _polynomial_kernel(x, y)
        off = (kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)) / (m * (m - 1))
        values.append(off - 2.0 * kxy.mean())
    return float(np.mean(values)), float(np.std(values))


def _pairwise_sq_distances(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    d = (x * x).sum(1)[:, None] + (y * y).sum(1)[None, :] - 2.0 * x @ y.T
    return np.maximum(d, 0.0)


def _knn_radii(x: np.ndarray, k: int, block: int) -> np.ndarray:
    """Squared distance from each row of x to its k-th nearest other row."""
    radii = np.empty(len(x))
    for i in range(0, len(x), block):
        d = _pairwise_sq_distances(x[i:i + block], x)
        radii[i:i + block] = np.partition(d, k, axis=1)[:, k]  # index 0 is the row itself
    return radii


def _share_inside(points: np.ndarray, centres: np.ndarray, radii: np.ndarray, block: int) -> float:
    """Share of points inside at least one ball (centre, radius) of the k-NN manifold."""
    inside = 0
    for i in range(0, len(points), block):
        d = _pairwise_sq_distances(points[i:i + block], centres)
        inside += int(np.sum(np.any(d <= radii[None, :], axis=1)))
    return inside / len(points)


def precision_recall(real_features, fake_features, *, k: int = 3,
                     block: int = 1000) -> tuple[float, float]:
    """Improved precision and recall (Kynkäänniemi et al. 2019) with k-NN manifolds.

    Precision: share of fake samples inside the real manifold (the union of balls
    around each real sample reaching its k-th nearest real neighbour); recall: share
    of real samples inside the fake manifold. Distances are computed ``block`` rows at
    a time, so memory stays O(block * n).
    """
    real, fake = _as_2d(real_features, "real_features"), _as_2d(fake_features, "fake_features")
    if min(len(real), len(fake)) <= k:
        raise ValueError(f"precision/recall with k={k} needs more than {k} samples per set, "
                         f"got {len(real)} real and {len(fake)} fake.")
    precision = _share_inside(fake, real, _knn_radii(real, k, block), block)
    recall = _share_inside(real, fake, _knn_radii(fake, k, block), block)
    return precision, recall


def mode_coverage(probs, *, min_share: float = 0.01) -> dict[str, float | np.ndarray]:
    """Mode coverage of samples classified by a domain classifier (MNIST-like data).

    Returns the share of samples per predicted class, the number of classes holding at
    least ``min_share`` of the samples (the 1% rule of the mode-collapse literature),
    and the KL divergence of the class histogram from uniform (0: perfectly balanced;
    log(num_classes): a single class).
    """
    p = _as_2d(probs, "probs")
    classes = p.shape[1]
    share = np.bincount(p.argmax(axis=1), minlength=classes) / len(p)
    return {"class_share": share,
            "classes_covered": int(np.sum(share >= min_share)),
            "kl_from_uniform": float(np.sum(xlogy(share, share * classes)))}
