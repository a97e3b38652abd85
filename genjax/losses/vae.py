"""VAE objectives as small pure functions of arrays.

Conventions: every function returns one value per example (summed over the event
dimensions, i.e. everything but the leading batch axis), in nats. Averaging over the
batch is the caller's choice, so the same pieces serve training (mean) and
evaluation (masked sums).
"""

from __future__ import annotations

import math

import chex
import jax
import jax.numpy as jnp

from genjax import replica

_LOG_2PI = math.log(2.0 * math.pi)


def _sum_event(x: jax.Array) -> jax.Array:
    return x.reshape(x.shape[0], -1).sum(axis=-1)


def bernoulli_log_likelihood(logits: jax.Array, x: jax.Array) -> jax.Array:
    """log p(x | logits) for Bernoulli pixels, stable for any logit magnitude.

    Uses log p = x * l - softplus(l), which never exponentiates a large positive
    number (unlike log(sigmoid(l))), so |l| = 100 is exact.

    Args:
      logits: decoder outputs [B, ...]; p(x=1) = sigmoid(logits).
      x: targets in [0, 1] (binary, or grey values for the "continuous BCE" variant).

    Returns:
      [B] log-likelihoods in nats.
    """
    chex.assert_equal_shape([logits, x])
    return _sum_event(x * logits - jax.nn.softplus(logits))


def gaussian_log_likelihood(x: jax.Array, mean: jax.Array, log_var: jax.Array) -> jax.Array:
    """log N(x; mean, exp(log_var)) with diagonal covariance, summed per example.

    Returns:
      [B] log-densities in nats.
    """
    chex.assert_equal_shape([x, mean, log_var])
    return _sum_event(-0.5 * (_LOG_2PI + log_var + (x - mean) ** 2 * jnp.exp(-log_var)))


def standard_normal_log_density(z: jax.Array) -> jax.Array:
    """log N(z; 0, I), summed per example: [B]."""
    return _sum_event(-0.5 * (_LOG_2PI + z**2))


def kl_standard_normal(mean: jax.Array, log_var: jax.Array) -> jax.Array:
    """Analytic KL( N(mean, diag(exp(log_var))) || N(0, I) ) per example: [B].

    KL = 0.5 * sum(exp(log_var) + mean^2 - 1 - log_var).
    """
    chex.assert_equal_shape([mean, log_var])
    return _sum_event(0.5 * (jnp.exp(log_var) + mean**2 - 1.0 - log_var))


def reparameterize(key: jax.Array, mean: jax.Array, log_var: jax.Array, *,
                   axis_name: str | None = None) -> jax.Array:
    """Sample z = mean + exp(log_var / 2) * eps, eps ~ N(0, I), differentiably.

    ``axis_name``: under a data-parallel driver, eps is this replica's rows of the
    one-device draw (`genjax.replica.shard_draw`).
    """
    normal = lambda k, shape: jax.random.normal(k, shape, mean.dtype)
    return mean + jnp.exp(0.5 * log_var) * replica.shard_draw(normal, key, mean.shape, axis_name)


def elbo(log_likelihood: jax.Array, kl: jax.Array, beta: float = 1.0) -> jax.Array:
    """Evidence lower bound per example: E_q[log p(x|z)] - beta * KL(q(z|x) || p(z)).

    beta = 1 is the true ELBO (a bound on log p(x)); beta != 1 is the beta-VAE
    objective, which is not a bound, so report NLLs only with beta = 1 terms.
    """
    return log_likelihood - beta * kl


def iwae_bound(log_weights: jax.Array) -> jax.Array:
    """Importance-weighted bound from K log-weights per example.

    Args:
      log_weights: [K, B] with log w_k = log p(x, z_k) - log q(z_k | x), z_k ~ q(z|x).

    Returns:
      [B] log(1/K sum_k w_k), computed with log-sum-exp. K = 1 gives a one-sample
      ELBO estimate; the bound is non-decreasing in K in expectation (Burda et al. 2016).
    """
    k = log_weights.shape[0]
    return jax.nn.logsumexp(log_weights, axis=0) - jnp.log(k)
