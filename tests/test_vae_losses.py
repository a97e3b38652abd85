"""VAE objectives against closed forms, direct formulas and Monte-Carlo references."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from genjax.losses import vae as L

jax.config.update("jax_enable_x64", False)


def test_bernoulli_matches_direct_formula():
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 3, (4, 5, 5, 1))
    x = rng.uniform(0, 1, logits.shape)  # grey targets too ("continuous BCE")
    p = 1 / (1 + np.exp(-logits))
    direct = (x * np.log(p) + (1 - x) * np.log1p(-p)).reshape(4, -1).sum(-1)
    np.testing.assert_allclose(L.bernoulli_log_likelihood(jnp.asarray(logits, jnp.float32),
                                                          jnp.asarray(x, jnp.float32)),
                               direct, rtol=1e-5)


@pytest.mark.parametrize("logit", [100.0, -100.0])
def test_bernoulli_stable_at_large_logits(logit):
    logits = jnp.full((2, 3), logit)
    x = jnp.array([[0.0, 1.0, 0.5], [1.0, 0.0, 0.0]])
    ll = L.bernoulli_log_likelihood(logits, x)
    # log sigmoid(l) = -softplus(-l), log(1 - sigmoid(l)) = -softplus(l); exact here:
    big = abs(logit)
    on, off = (0.0, -big) if logit > 0 else (-big, 0.0)  # log p(x=1), log p(x=0)
    expected = (x * on + (1 - x) * off).sum(-1)
    np.testing.assert_allclose(ll, expected, atol=1e-4)
    grad = jax.grad(lambda l: L.bernoulli_log_likelihood(l, x).sum())(logits)
    assert np.all(np.isfinite(grad))


def test_gaussian_matches_scipy():
    rng = np.random.default_rng(1)
    x, mean = rng.normal(size=(3, 7)), rng.normal(size=(3, 7))
    log_var = rng.normal(0, 0.5, (3, 7))
    ref = stats.norm.logpdf(x, mean, np.exp(0.5 * log_var)).sum(-1)
    np.testing.assert_allclose(L.gaussian_log_likelihood(*map(jnp.asarray, (x, mean, log_var))),
                               ref, rtol=1e-5)
    np.testing.assert_allclose(L.standard_normal_log_density(jnp.asarray(x)),
                               stats.norm.logpdf(x).sum(-1), rtol=1e-5)


def test_analytic_kl_matches_monte_carlo():
    mean = jnp.array([[0.5, -1.0, 2.0], [0.0, 0.0, 0.0]])
    log_var = jnp.array([[-1.0, 0.5, 0.0], [0.0, 0.0, 0.0]])
    n = 400_000
    z = L.reparameterize(jax.random.key(0), jnp.broadcast_to(mean, (n, 2, 3)),
                         jnp.broadcast_to(log_var, (n, 2, 3)))
    flat = z.reshape(-1, 3)
    tile = lambda a: jnp.broadcast_to(a, (n, 2, 3)).reshape(-1, 3)
    log_ratio = (L.gaussian_log_likelihood(flat, tile(mean), tile(log_var))
                 - L.standard_normal_log_density(flat)).reshape(n, 2)
    mc, se = np.mean(log_ratio, 0), np.std(log_ratio, 0) / np.sqrt(n)
    analytic = L.kl_standard_normal(mean, log_var)
    np.testing.assert_allclose(analytic[1], 0.0, atol=1e-7)  # KL(N(0,I) || N(0,I)) = 0
    assert np.all(np.abs(mc - analytic) < 4 * se + 1e-6), (mc, analytic, se)


def test_elbo_beta_weighting():
    ll, kl = jnp.array([-10.0, -20.0]), jnp.array([3.0, 1.0])
    np.testing.assert_allclose(L.elbo(ll, kl), [-13.0, -21.0])
    np.testing.assert_allclose(L.elbo(ll, kl, beta=4.0), [-22.0, -24.0])


def test_iwae_is_exact_with_the_true_posterior():
    """Linear-Gaussian model: with q = exact posterior every weight is p(x), for any K."""
    rng = np.random.default_rng(2)
    d_x, d_z, sigma2 = 6, 3, 0.3
    q, _ = np.linalg.qr(rng.normal(size=(d_x, d_z)))
    w = q * np.array([2.0, 1.0, 0.5])  # orthogonal columns: diagonal posterior
    b = rng.normal(size=d_x)
    x = rng.normal(size=(4, d_x))
    post_var = 1.0 / (1.0 + (w**2).sum(0) / sigma2)           # [d_z]
    post_mean = (x - b) @ w / sigma2 * post_var                # [B, d_z]
    exact = stats.multivariate_normal(b, w @ w.T + sigma2 * np.eye(d_x)).logpdf(x)
    for k in (1, 7):
        z = post_mean + np.sqrt(post_var) * rng.normal(size=(k, 4, d_z))
        zf = jnp.asarray(z.reshape(-1, d_z), jnp.float32)
        tile = lambda a: jnp.asarray(np.broadcast_to(a, (k, 4, a.shape[-1])).reshape(k * 4, -1),
                                     jnp.float32)
        lw = (L.gaussian_log_likelihood(tile(x), zf @ jnp.asarray(w.T, jnp.float32) + b,
                                        jnp.full((k * 4, d_x), np.log(sigma2), jnp.float32))
              + L.standard_normal_log_density(zf)
              - L.gaussian_log_likelihood(zf, tile(post_mean), tile(np.log(post_var))))
        np.testing.assert_allclose(L.iwae_bound(lw.reshape(k, 4)), exact, rtol=1e-4)


def test_iwae_bound_is_log_mean_exp():
    lw = jnp.array([[0.0, -1000.0], [np.log(3.0), -1001.0]])
    np.testing.assert_allclose(L.iwae_bound(lw), [np.log(2.0), -1000.0 + np.log((1 + np.exp(-1)) / 2)],
                               rtol=1e-6)


def test_mismatched_shapes_are_refused_not_broadcast():
    """A [B, D] mean with a [B, 1] log-variance would broadcast silently into a wrong
    density; the public pieces assert equal shapes instead."""
    with pytest.raises(AssertionError, match="different shapes"):
        L.kl_standard_normal(jnp.zeros((2, 3)), jnp.zeros((2, 1)))
    with pytest.raises(AssertionError, match="different shapes"):
        L.gaussian_log_likelihood(jnp.zeros((2, 3)), jnp.zeros((2, 3)), jnp.zeros((2, 1)))
    with pytest.raises(AssertionError, match="different shapes"):
        L.bernoulli_log_likelihood(jnp.zeros((2, 3)), jnp.zeros((3,)))
