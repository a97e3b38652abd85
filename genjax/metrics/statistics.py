"""Fréchet distance between feature distributions (FID), with streaming float64 statistics.

FID = ||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^{1/2})  (Heusel et al. 2017).

Everything here runs on the host in float64 NumPy: feature batches arrive from the
device as float32, are merged into running statistics with Chan et al.'s pairwise
update (stable where the naive sum of outer products loses digits), and the matrix
square root is SciPy's. Partial final batches count like any other batch.
"""

from __future__ import annotations

import dataclasses
import logging
import warnings

import numpy as np
import scipy.linalg

_EPS = 1e-6           # diagonal offset of the retry when S_a S_b is singular (pytorch-fid's)
_IMAG_TOL = 1e-3      # largest |imaginary part| on the square root's diagonal treated as noise
_RESIDUAL_TOL = 1e-5  # ||X X - A||_F / ||A||_F above this counts as a failed square root


@dataclasses.dataclass(frozen=True)
class FeatureStats:
    """Count, mean and centred scatter matrix (sum of (x - mean)(x - mean)^T) of features."""

    count: int
    mean: np.ndarray
    scatter: np.ndarray

    @classmethod
    def empty(cls, dim: int) -> FeatureStats:
        return cls(0, np.zeros(dim), np.zeros((dim, dim)))

    @classmethod
    def of(cls, features) -> FeatureStats:
        """Statistics of one ``[n, d]`` batch."""
        x = np.asarray(features, np.float64)
        if x.ndim != 2:
            raise ValueError(f"Features must be [n, d], got shape {x.shape}.")
        if not np.all(np.isfinite(x)):
            bad = int(np.sum(~np.all(np.isfinite(x), axis=1)))
            raise ValueError(f"Features hold NaN or Inf ({bad} of {len(x)} rows): the images "
                             f"or the network that made them are not finite.")
        mean = x.mean(axis=0) if len(x) else np.zeros(x.shape[1])
        centred = x - mean
        return cls(len(x), mean, centred.T @ centred)

    def update(self, features) -> FeatureStats:
        """These statistics merged with a new batch (any size, the last one included)."""
        return self.merge(FeatureStats.of(features))

    def merge(self, other: FeatureStats) -> FeatureStats:
        if other.mean.shape != self.mean.shape:
            raise ValueError(f"Feature dimension {other.mean.shape[0]} != {self.mean.shape[0]}.")
        n = self.count + other.count
        if not other.count or not self.count:
            return other if other.count else self
        delta = other.mean - self.mean
        mean = self.mean + delta * (other.count / n)
        scatter = self.scatter + other.scatter + np.outer(delta, delta) * (self.count * other.count / n)
        return FeatureStats(n, mean, scatter)

    @property
    def covariance(self) -> np.ndarray:
        """Unbiased covariance (divides by n - 1)."""
        if self.count < 2:
            raise ValueError(f"A covariance needs at least 2 samples, got {self.count}.")
        return self.scatter / (self.count - 1)

    def save(self, path: str) -> None:
        np.savez(path, count=self.count, mean=self.mean, scatter=self.scatter)

    @classmethod
    def load(cls, path: str) -> FeatureStats:
        with np.load(path, allow_pickle=False) as f:
            return cls(int(f["count"]), f["mean"], f["scatter"])


def _sqrtm_product(sigma_a: np.ndarray, sigma_b: np.ndarray) -> np.ndarray:
    """Real square root of sigma_a @ sigma_b, retrying with a small ridge when singular."""
    def attempt(a, b):
        product = a @ b
        with warnings.catch_warnings():  # singular products are judged by the residual below
            warnings.simplefilter("ignore", scipy.linalg.LinAlgWarning)
            root = scipy.linalg.sqrtm(product)
        if not np.all(np.isfinite(root)):
            return None
        residual = np.linalg.norm(root @ root - product) / max(np.linalg.norm(product), 1e-300)
        return root if residual <= _RESIDUAL_TOL else None

    root = attempt(sigma_a, sigma_b)
    if root is None:
        logging.warning("FID: S_a S_b is singular or ill-conditioned; adding %g to the "
                        "diagonals (fewer samples than feature dimensions?).", _EPS)
        ridge = np.eye(sigma_a.shape[0]) * _EPS
        root = attempt(sigma_a + ridge, sigma_b + ridge)
        if root is None:
            raise FloatingPointError("FID: no accurate square root of S_a S_b even with a "
                                     f"{_EPS} ridge; the covariances are degenerate.")
    if np.iscomplexobj(root):
        worst = float(np.max(np.abs(np.diagonal(root).imag)))
        if worst > _IMAG_TOL:
            raise FloatingPointError(f"FID: the square root of S_a S_b has imaginary parts up "
                                     f"to {worst:.3g} (> {_IMAG_TOL}); the statistics are broken.")
        root = root.real
    return root


def frechet_distance(mean_a: np.ndarray, cov_a: np.ndarray, mean_b: np.ndarray,
                     cov_b: np.ndarray) -> float:
    """Fréchet distance between N(mean_a, cov_a) and N(mean_b, cov_b), in float64."""
    mean_a, mean_b = np.asarray(mean_a, np.float64), np.asarray(mean_b, np.float64)
    cov_a, cov_b = np.asarray(cov_a, np.float64), np.asarray(cov_b, np.float64)
    if mean_a.shape != mean_b.shape or cov_a.shape != cov_b.shape:
        raise ValueError(f"Mismatched statistics: means {mean_a.shape} vs {mean_b.shape}, "
                         f"covariances {cov_a.shape} vs {cov_b.shape}.")
    diff = mean_a - mean_b
    root = _sqrtm_product(cov_a, cov_b)
    return float(diff @ diff + np.trace(cov_a) + np.trace(cov_b) - 2.0 * np.trace(root))


def fid_from_stats(a: FeatureStats, b: FeatureStats) -> float:
    """FID between two sets of accumulated feature statistics."""
    for name, s in (("first", a), ("second", b)):
        if s.count <= s.mean.shape[0]:
            logging.warning("FID: the %s set has %d samples for %d feature dimensions; its "
                            "covariance is rank-deficient and FID is biased upwards.",
                            name, s.count, s.mean.shape[0])
    return frechet_distance(a.mean, a.covariance, b.mean, b.covariance)


def fid(features_a, features_b) -> float:
    """FID between two ``[n, d]`` feature arrays (any float dtype; computed in float64)."""
    return fid_from_stats(FeatureStats.of(features_a), FeatureStats.of(features_b))
