"""Autoregressive likelihoods as pure functions of arrays: Bernoulli pixels for binarised
images and the discretised logistic mixture of PixelCNN++ (Salimans et al. 2017) for
8-bit images, with exact sampling from each.

A network gives per-pixel parameters [B, H, W, P] computed from the pixels before each
one; the image's log-likelihood is the sum over pixels of log p(x_ij | x_<ij), so one
forward pass scores a whole image exactly (nats per image; bits/dim = nats / (D ln 2)).

The mixture (``num_mixtures`` = K components, C channels, P = K (1 + 2C + C(C-1)/2)):
the pixel picks a component k with softmax weights; given k, channel c is a logistic with
scale s_kc and mean mu_kc + sum_{c' < c} a_kcc' x_c' (the coefficients a = tanh(...) make
the channels of one pixel autoregressive too), discretised to the 8-bit bins of
`genjax.losses.discretized` with open edge bins. Log-scales are floored at -7 as in the
paper.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from genjax.losses import vae
from genjax.losses.discretized import BIN, discretized_log_likelihood

LIKELIHOODS = ("bernoulli", "logistic_mixture")
MIN_LOG_SCALE = -7.0


def num_params(likelihood: str, channels: int, num_mixtures: int = 0) -> int:
    """Parameters per pixel the network must output for ``likelihood``."""
    if likelihood == "bernoulli":
        return channels
    if likelihood == "logistic_mixture":
        return num_mixtures * (1 + 2 * channels + channels * (channels - 1) // 2)
    raise ValueError(f"Unknown likelihood {likelihood!r}; valid: {', '.join(LIKELIHOODS)}.")


def _split_mixture(params: jax.Array, channels: int, k: int):
    """[..., P] -> logits [..., K], means and log-scales [..., C, K], coefficients [..., C(C-1)/2, K]."""
    pairs = channels * (channels - 1) // 2
    logits, means, log_scales, coeffs = jnp.split(
        params, np.cumsum([k, channels * k, channels * k]), axis=-1)
    shape = params.shape[:-1]
    return (logits, means.reshape(*shape, channels, k),
            jnp.maximum(log_scales.reshape(*shape, channels, k), MIN_LOG_SCALE),
            jnp.tanh(coeffs.reshape(*shape, pairs, k)))


def _channel_means(means: jax.Array, coeffs: jax.Array, x: jax.Array) -> jax.Array:
    """mu_kc + sum_{c' < c} a_kcc' x_c' for every channel: [..., C, K] (x: [..., C])."""
    channels, out, pair = means.shape[-2], [], 0
    for c in range(channels):
        m = means[..., c, :]
        for prev in range(c):
            m = m + coeffs[..., pair, :] * x[..., prev, None]
            pair += 1
        out.append(m)
    return jnp.stack(out, axis=-2)


def logistic_mixture_log_prob(params: jax.Array, x: jax.Array, num_mixtures: int) -> jax.Array:
    """log p(x) per pixel [B, H, W] of 8-bit images ``x`` [B, H, W, C] in [-1, 1] under the
    discretised logistic mixture with parameters ``params`` [B, H, W, P]."""
    logits, means, log_scales, coeffs = _split_mixture(params, x.shape[-1], num_mixtures)
    mean = _channel_means(means, coeffs, x)
    per_channel = discretized_log_likelihood(x[..., None], mean, log_scales, jax.nn.log_sigmoid)
    joint = jnp.sum(per_channel, axis=-2) + jax.nn.log_softmax(logits, axis=-1)
    return jax.nn.logsumexp(joint, axis=-1)


def log_likelihood(likelihood: str, params: jax.Array, x: jax.Array, num_mixtures: int = 0
                   ) -> jax.Array:
    """log p(x) per image [B] in nats: Bernoulli (x in {0, 1}) or the logistic mixture
    (x on the 8-bit grid of [-1, 1])."""
    if likelihood == "bernoulli":
        return vae.bernoulli_log_likelihood(params, x)
    if likelihood == "logistic_mixture":
        per_pixel = logistic_mixture_log_prob(params, x, num_mixtures)
        return jnp.sum(per_pixel.reshape(x.shape[0], -1), axis=-1)
    raise ValueError(f"Unknown likelihood {likelihood!r}; valid: {', '.join(LIKELIHOODS)}.")


def quantize(x: jax.Array) -> jax.Array:
    """The 8-bit level of [-1, 1] whose bin holds x (values beyond the edges go to them)."""
    return jnp.round((jnp.clip(x, -1.0, 1.0) + 1.0) / (2.0 * BIN)) * (2.0 * BIN) - 1.0


def sample_logistic_mixture(key: jax.Array, params: jax.Array, channels: int, num_mixtures: int
                            ) -> jax.Array:
    """One exact draw [..., C] per pixel from the discretised mixture: a component, then
    channel by channel a logistic value rounded to its 8-bit level (the edge bins take
    everything beyond them)."""
    logits, means, log_scales, coeffs = _split_mixture(params, channels, num_mixtures)
    comp_key, noise_key = jax.random.split(key)
    k = jax.nn.one_hot(jax.random.categorical(comp_key, logits), num_mixtures)  # [..., K]
    u = jax.random.uniform(noise_key, (*params.shape[:-1], channels),
                           minval=np.finfo(np.float32).tiny)  # (0, 1): finite logits
    noise = jnp.log(u) - jnp.log1p(-u)  # standard logistic
    x = jnp.zeros((*params.shape[:-1], channels), params.dtype)
    for c in range(channels):  # channel c's mean needs the earlier channels' values
        mean = jnp.sum(_channel_means(means, coeffs, x)[..., c, :] * k, axis=-1)
        scale = jnp.exp(jnp.sum(log_scales[..., c, :] * k, axis=-1))
        x = x.at[..., c].set(quantize(mean + scale * noise[..., c]))
    return x


def sample(likelihood: str, key: jax.Array, params: jax.Array, channels: int,
           num_mixtures: int = 0) -> jax.Array:
    """One draw [..., C] per pixel given its parameters [..., P]: Bernoulli in {0, 1}, or
    the mixture's 8-bit level in [-1, 1]."""
    if likelihood == "bernoulli":
        return jax.random.bernoulli(key, jax.nn.sigmoid(params)).astype(params.dtype)
    return sample_logistic_mixture(key, params, channels, num_mixtures)
