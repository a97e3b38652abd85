"""Sample-quality metrics: FID, Inception Score, KID, precision/recall, mode coverage.

The math is host-side float64 and independent of any feature extractor; extractors
(the InceptionV3 port, the mnist5k domain classifier) produce the features and class
probabilities these functions take.
"""

from genjax.metrics.evaluation import quality_from_features, sample_quality
from genjax.metrics.scores import inception_score, kid, mode_coverage, precision_recall
from genjax.metrics.statistics import FeatureStats, fid, fid_from_stats, frechet_distance

__all__ = ["FeatureStats", "fid", "fid_from_stats", "frechet_distance", "inception_score", "kid",
           "mode_coverage", "precision_recall", "quality_from_features", "sample_quality"]
