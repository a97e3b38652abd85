"""Mode coverage of samples from a mixture with known modes (the 2-D benchmarks).

The definitions of the unrolled-GAN and VEEGAN papers: a sample is of high quality
when it lies within 3 standard deviations of some mode's mean; a mode is covered when
at least 1% of all samples are high-quality samples nearest to it. Those need sharp
samples (3 std is 0.06 on the ring); ``modes_reached`` drops the distance limit (a
mode is reached when it is the nearest mode of at least 1% of the samples), so it
tells spread-out coverage from collapse when samples are not yet sharp.
"""

from __future__ import annotations

import numpy as np


def mode_metrics(samples: np.ndarray, centers: np.ndarray, std: float, *,
                 radius: float = 3.0, min_share: float = 0.01) -> dict[str, float]:
    """Modes covered and the share of high-quality samples.

    Args:
      samples: [N, D] generated points.
      centers: [M, D] the modes' means.
      std: the modes' (isotropic) standard deviation.
      radius: a sample within ``radius * std`` of a mean is high quality.
      min_share: a mode is covered when at least this share of the N samples are
        high-quality samples assigned to it.

    Returns:
      ``modes_covered`` (0..M), ``high_quality`` (share of the samples, 0..1) and
      ``modes_reached`` (0..M, no distance limit).
    """
    samples = np.asarray(samples, np.float64)
    d = np.linalg.norm(samples[:, None, :] - np.asarray(centers)[None], axis=-1)  # [N, M]
    nearest, good = d.argmin(axis=1), d.min(axis=1) <= radius * std
    counts = np.bincount(nearest[good], minlength=len(centers))
    reached = np.bincount(nearest, minlength=len(centers))
    return {"modes_covered": float(np.sum(counts >= min_share * len(samples))),
            "high_quality": float(np.mean(good)),
            "modes_reached": float(np.sum(reached >= min_share * len(samples)))}
