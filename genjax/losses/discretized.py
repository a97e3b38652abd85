"""Probabilities of 8-bit pixels under a continuous distribution discretised to their
bins, shared by the diffusion decoder (Gaussian) and PixelCNN++ (logistic).

Pixels live in [-1, 1] on the grid 2k/255 - 1, k = 0..255 (``preprocess='symmetric'``).
Level x owns the interval [x - 1/255, x + 1/255]; the bin of -1 is open to -inf and that
of 1 to +inf, so the 256 probabilities of a pixel sum to exactly 1.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np


def bits_per_dim(nats: jax.Array, num_dims: int) -> jax.Array:
    """nats / (D ln 2): a negative log-likelihood (or bound) in nats per image as bits per
    dimension, the unit of every 8-bit likelihood here."""
    return nats / (num_dims * np.log(2.0))

BIN = 1.0 / 255.0  # half the width of one 8-bit level in [-1, 1]
LogCdf = Callable[[jax.Array], jax.Array]  # log F(z) of a distribution symmetric about 0


def log1mexp(x: jax.Array) -> jax.Array:
    """log(1 - e^x) for x < 0, accurate at both ends (Mächler 2012). Each branch only sees
    arguments it is finite on, so gradients stay finite too."""
    near = x > -np.log(2.0)
    a = jnp.log(-jnp.expm1(jnp.where(near, x, -1.0)))
    b = jnp.log1p(-jnp.exp(jnp.where(near, -1.0, x)))
    return jnp.where(near, a, b)


def log_mass(lo: jax.Array, hi: jax.Array, log_cdf: LogCdf) -> jax.Array:
    """log(F(hi) - F(lo)) for lo < hi, taken in the tail where it does not cancel (F
    symmetric, so 1 - F(z) = F(-z)). A difference that rounds to 0 is floored at
    e^-69 of the larger tail (reached only by scales millions of times a bin)."""
    upper_hi, upper_lo = log_cdf(-lo), log_cdf(-hi)   # both above 0: 1 - F
    lower_hi, lower_lo = log_cdf(hi), log_cdf(lo)
    upper = upper_hi + log1mexp(jnp.minimum(upper_lo - upper_hi, -1e-30))
    lower = lower_hi + log1mexp(jnp.minimum(lower_lo - lower_hi, -1e-30))
    return jnp.where(lo > 0, upper, lower)


def discretized_log_likelihood(x: jax.Array, mean: jax.Array, log_scale: jax.Array,
                               log_cdf: LogCdf) -> jax.Array:
    """log P(x) per pixel for x on the 8-bit grid: the mass of the distribution with
    standardised log-CDF ``log_cdf``, location ``mean`` and scale e^log_scale, on x's bin
    (edge bins open). Exact: no probability floor, so a pixel's 256 levels sum to 1."""
    inv = jnp.exp(-log_scale)
    lo, hi = (x - BIN - mean) * inv, (x + BIN - mean) * inv
    return jnp.where(x < -1.0 + BIN, log_cdf(hi),
                     jnp.where(x > 1.0 - BIN, log_cdf(-lo), log_mass(lo, hi, log_cdf)))
