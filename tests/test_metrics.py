"""Metric math against closed forms and independent float64 references."""

import numpy as np
import pytest
import scipy.linalg

from genjax import metrics


def _gaussian(rng, n, mean, cov):
    return rng.multivariate_normal(mean, cov, size=n)


def test_fid_of_a_set_with_itself_is_zero():
    x = np.random.default_rng(0).normal(size=(500, 16)) @ np.random.default_rng(1).normal(size=(16, 16))
    assert abs(metrics.fid(x, x)) < 1e-8 * np.trace(np.cov(x, rowvar=False))


def test_frechet_distance_matches_the_closed_form():
    rng = np.random.default_rng(0)
    mean_a, mean_b = rng.normal(size=5), rng.normal(size=5)
    var_a, var_b = rng.uniform(0.5, 2, 5), rng.uniform(0.5, 2, 5)
    # Diagonal covariances: sum_i (s_a + s_b - 2 sqrt(s_a s_b)) = sum_i (sqrt s_a - sqrt s_b)^2.
    expected = np.sum((mean_a - mean_b) ** 2) + np.sum((np.sqrt(var_a) - np.sqrt(var_b)) ** 2)
    got = metrics.frechet_distance(mean_a, np.diag(var_a), mean_b, np.diag(var_b))
    assert got == pytest.approx(expected, rel=1e-10)
    # Full covariances C and k^2 C (they commute): FID = |dm|^2 + (1 - k)^2 tr C.
    q = rng.normal(size=(5, 5))
    cov = q @ q.T + np.eye(5)
    got = metrics.frechet_distance(mean_a, cov, mean_b, 9.0 * cov)
    assert got == pytest.approx(np.sum((mean_a - mean_b) ** 2) + 4.0 * np.trace(cov), rel=1e-9)


def test_fid_of_gaussian_samples_approaches_the_closed_form():
    rng = np.random.default_rng(0)
    a = _gaussian(rng, 200_000, np.zeros(3), np.eye(3))
    b = _gaussian(rng, 200_000, np.full(3, 0.5), 4.0 * np.eye(3))
    assert metrics.fid(a, b) == pytest.approx(3 * 0.25 + 3 * 1.0, rel=0.01)


def test_streaming_fid_matches_an_independent_float64_computation():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(1003, 32)).astype(np.float32) @ rng.normal(size=(32, 32)).astype(np.float32)
    b = (rng.normal(size=(777, 32)) * 1.3 + 0.2).astype(np.float32)
    stats = {}
    for name, x in (("a", a), ("b", b)):
        s = metrics.FeatureStats.empty(32)
        for i in range(0, len(x), 64):  # the partial final batch must count
            s = s.update(x[i:i + 64])
        assert s.count == len(x)
        stats[name] = s
    got = metrics.fid_from_stats(stats["a"], stats["b"])

    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    ca, cb = np.cov(a64, rowvar=False), np.cov(b64, rowvar=False)
    root = scipy.linalg.sqrtm(ca @ cb).real
    ref = np.sum((a64.mean(0) - b64.mean(0)) ** 2) + np.trace(ca + cb - 2 * root)
    assert got == pytest.approx(ref, rel=1e-6)
    np.testing.assert_allclose(stats["a"].covariance, ca, rtol=1e-9, atol=1e-9)


def test_rank_deficient_covariances_do_not_crash(tmp_path):
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(10, 64)), rng.normal(size=(12, 64))
    value = metrics.fid(a, b)
    assert np.isfinite(value) and value > 0
    s = metrics.FeatureStats.of(a)
    s.save(str(tmp_path / "s.npz"))
    back = metrics.FeatureStats.load(str(tmp_path / "s.npz"))
    assert back.count == 10 and np.array_equal(back.scatter, s.scatter)


def test_inception_score_extremes():
    identical = np.tile(np.array([[0.1, 0.2, 0.7]]), (100, 1))
    assert metrics.inception_score(identical, splits=10) == pytest.approx((1.0, 0.0), abs=1e-12)
    confident = np.eye(10)[np.arange(1000) % 10]
    mean, std = metrics.inception_score(confident, splits=10)
    assert mean == pytest.approx(10.0, rel=1e-12) and std == pytest.approx(0.0, abs=1e-9)
    with pytest.raises(ValueError, match="summing to 1"):
        metrics.inception_score(np.ones((20, 3)))


def test_kid_is_unbiased_around_zero_for_one_distribution():
    rng = np.random.default_rng(0)
    values = [metrics.kid(rng.normal(size=(60, 8)), rng.normal(size=(60, 8)), num_subsets=1,
                          seed=i)[0] for i in range(300)]
    # Unbiased: the average over independent pairs is 0 within its standard error; the
    # biased (V-statistic) estimator would sit well above it.
    assert abs(np.mean(values)) < 3 * np.std(values) / np.sqrt(len(values))
    shifted = metrics.kid(rng.normal(size=(300, 8)), rng.normal(size=(300, 8)) + 1.0,
                          num_subsets=10, subset_size=100)[0]
    assert shifted > 10 * np.std(values)


def test_precision_recall_on_known_supports():
    rng = np.random.default_rng(0)
    centres = np.array([[0.0, 0.0], [10.0, 0.0]])
    real = np.concatenate([c + rng.normal(scale=0.1, size=(200, 2)) for c in centres])
    assert metrics.precision_recall(real, real) == (1.0, 1.0)
    half = centres[0] + rng.normal(scale=0.1, size=(400, 2))  # one of the two modes
    precision, recall = metrics.precision_recall(real, half)
    assert precision > 0.95 and 0.45 < recall < 0.55
    far = real + 100.0
    assert metrics.precision_recall(real, far) == (0.0, 0.0)


def test_mode_coverage_counts_classes():
    probs = np.eye(10)[np.r_[np.zeros(95, int), np.arange(1, 6)]]
    cov = metrics.mode_coverage(probs, min_share=0.01)
    assert cov["classes_covered"] == 6 and cov["class_share"][0] == pytest.approx(0.95)
    uniform = metrics.mode_coverage(np.eye(10)[np.arange(100) % 10])
    assert uniform["classes_covered"] == 10 and uniform["kl_from_uniform"] == pytest.approx(0.0)
    single = metrics.mode_coverage(np.eye(10)[np.zeros(50, int)])
    assert single["kl_from_uniform"] == pytest.approx(np.log(10))
