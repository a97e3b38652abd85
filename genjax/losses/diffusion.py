"""Gaussian diffusion (DDPM, Ho et al. 2020) as pure functions: schedules, the forward
process, the posterior, prediction targets, the training objectives and the terms of
the variational bound.

Conventions. Timesteps are indices ``t = 0 .. T-1`` (the papers' ``t = 1 .. T``).
``alphas_cumprod[t]`` is ᾱ_t = prod_{s <= t} (1 - β_s), so
q(x_t | x_0) = N(sqrt(ᾱ_t) x_0, (1 - ᾱ_t) I), and the step before index 0 is the data
itself (ᾱ_{-1} = 1). Images live in [-1, 1] on the 8-bit grid 2k/255 - 1
(``preprocess='symmetric'``).

The bound on -log p(x_0) of an 8-bit image (nats) is

    L = L_T + sum_{t=1}^{T-1} L_t + L_0,
    L_T = KL(q(x_{T-1} | x_0) || N(0, I)),
    L_t = KL(q(x_{t-1} | x_t, x_0) || p(x_{t-1} | x_t)),
    L_0 = -log p(x_0 | x_1 (index 0)),   the discretised Gaussian decoder:

each pixel's probability is the Gaussian mass of its bin [x - 1/255, x + 1/255], the
edge bins open to -inf (x = -1) and +inf (x = 1). Bits per dimension are
L / (D ln 2) with D = H * W * C. No dequantisation noise is involved: the decoder is
already a distribution over the 256 levels.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import log_ndtr

from genjax.losses import discretized
from genjax.losses.discretized import discretized_log_likelihood

bits_per_dim = discretized.bits_per_dim  # nats -> bits/dim, shared by every 8-bit likelihood

SCHEDULES = ("linear", "cosine")
PREDICTIONS = ("eps", "v")
VARIANCES = ("small", "large")
WEIGHTINGS = ("none", "min_snr")


class Schedule(NamedTuple):
    """A noise schedule on ``timesteps`` (the network's time input; all of 0..T-1, or a
    respaced subset): ``betas[i] = 1 - alphas_cumprod[i] / alphas_cumprod[i - 1]``."""

    betas: np.ndarray            # float64 [K]
    alphas_cumprod: np.ndarray   # float64 [K]
    timesteps: np.ndarray        # int32 [K], increasing

    def __len__(self) -> int:
        return len(self.betas)


def linear_betas(num_timesteps: int = 1000, start: float = 1e-4, end: float = 0.02) -> np.ndarray:
    """Ho et al. 2020: β rising linearly from ``start`` to ``end`` (float64)."""
    return np.linspace(start, end, num_timesteps, dtype=np.float64)


def cosine_betas(num_timesteps: int = 1000, s: float = 0.008, max_beta: float = 0.999
                 ) -> np.ndarray:
    """Nichol & Dhariwal 2021: ᾱ(t) = f(t)/f(0), f(t) = cos²((t/T + s)/(1 + s) π/2),
    β_t = min(1 - ᾱ(t+1)/ᾱ(t), ``max_beta``) (float64)."""
    f = np.cos((np.arange(num_timesteps + 1, dtype=np.float64) / num_timesteps + s)
               / (1 + s) * np.pi / 2) ** 2
    return np.minimum(1.0 - f[1:] / f[:-1], max_beta)


def make_schedule(name: str, num_timesteps: int) -> Schedule:
    """The ``linear`` or ``cosine`` schedule over all ``num_timesteps`` steps."""
    if name not in SCHEDULES:
        raise ValueError(f"Unknown schedule {name!r}; valid: {', '.join(SCHEDULES)}.")
    if name == "linear":  # Ho et al.'s β range at T = 1000, scaled by 1000/T (Nichol & Dhariwal)
        if num_timesteps <= 20:
            raise ValueError(f"The linear schedule needs more than 20 timesteps (its last β is "
                             f"20/T), got {num_timesteps}; use more, or schedule='cosine'.")
        scale = 1000.0 / num_timesteps
        betas = linear_betas(num_timesteps, 1e-4 * scale, 0.02 * scale)
    else:
        betas = cosine_betas(num_timesteps)
    return Schedule(betas, np.cumprod(1.0 - betas), np.arange(num_timesteps, dtype=np.int32))


def respace(schedule: Schedule, keep: np.ndarray | list[int]) -> Schedule:
    """The schedule on the subset ``keep`` of its timesteps: the same ᾱ there, the β that
    take one kept step to the next (the Markov chain DDIM and fast DDPM sampling run)."""
    keep = np.unique(np.asarray(keep, np.int64))
    if len(keep) == 0 or keep[0] < 0 or keep[-1] >= len(schedule):
        raise ValueError(f"Respaced timesteps must lie in [0, {len(schedule) - 1}], got {keep}.")
    a = schedule.alphas_cumprod[keep]
    betas = 1.0 - a / np.concatenate([[1.0], a[:-1]])
    return Schedule(betas, a, schedule.timesteps[keep].astype(np.int32))


def spaced_timesteps(num_timesteps: int, steps: int) -> np.ndarray:
    """``steps`` indices spread evenly over 0..T-1, always including T-1 (where sampling
    starts) and 0 (where it ends)."""
    if not 1 <= steps <= num_timesteps:
        raise ValueError(f"Sampling steps must be in [1, {num_timesteps}], got {steps}.")
    return np.unique(np.round(np.linspace(0, num_timesteps - 1, steps)).astype(np.int64))


def _at(values: np.ndarray, t: jax.Array, ndim: int) -> jax.Array:
    """``values[t]`` as float32, shaped to broadcast against a batch of rank ``ndim``."""
    v = jnp.asarray(values, jnp.float32)[t]
    return v.reshape(v.shape + (1,) * (ndim - v.ndim))


def q_sample(schedule: Schedule, x0: jax.Array, t: jax.Array, noise: jax.Array) -> jax.Array:
    """x_t = sqrt(ᾱ_t) x_0 + sqrt(1 - ᾱ_t) ε: a draw of q(x_t | x_0) (t: index per example)."""
    a = _at(schedule.alphas_cumprod, t, x0.ndim)
    return jnp.sqrt(a) * x0 + jnp.sqrt(1.0 - a) * noise


def posterior(schedule: Schedule, x0: jax.Array, xt: jax.Array, t: jax.Array
              ) -> tuple[jax.Array, jax.Array]:
    """Mean and variance of q(x_{t-1} | x_t, x_0):
    mean = β_t sqrt(ᾱ_{t-1})/(1 - ᾱ_t) x_0 + (1 - ᾱ_{t-1}) sqrt(1 - β_t)/(1 - ᾱ_t) x_t,
    variance β̃_t = β_t (1 - ᾱ_{t-1})/(1 - ᾱ_t) (0 at index 0, where x_{t-1} is x_0)."""
    a = schedule.alphas_cumprod
    a_prev = np.concatenate([[1.0], a[:-1]])
    b = schedule.betas
    c0 = _at(b * np.sqrt(a_prev) / (1.0 - a), t, x0.ndim)
    ct = _at((1.0 - a_prev) * np.sqrt(1.0 - b) / (1.0 - a), t, x0.ndim)
    return c0 * x0 + ct * xt, _at(b * (1.0 - a_prev) / (1.0 - a), t, x0.ndim)


def model_log_variance(schedule: Schedule, t: jax.Array, kind: str, ndim: int) -> jax.Array:
    """log σ_t² of p(x_{t-1} | x_t): ``large`` σ² = β_t, ``small`` σ² = β̃_t (at index 0,
    where β̃ is 0, the value of index 1, as in Ho et al.'s code)."""
    if kind not in VARIANCES:
        raise ValueError(f"Unknown model variance {kind!r}; valid: {', '.join(VARIANCES)}.")
    a, b = schedule.alphas_cumprod, schedule.betas
    if kind == "large":
        var = b
    else:
        var = b * (1.0 - np.concatenate([[1.0], a[:-1]])) / (1.0 - a)
        var = np.concatenate([var[1:2], var[1:]]) if len(var) > 1 else b
    return _at(np.log(var), t, ndim)


def predict_x0_eps(schedule: Schedule, xt: jax.Array, t: jax.Array, output: jax.Array,
                   prediction: str) -> tuple[jax.Array, jax.Array]:
    """(x̂_0, ε̂) from the network ``output``: ε-prediction
    (x̂_0 = (x_t - sqrt(1-ᾱ) ε̂)/sqrt(ᾱ)) or v-prediction (v = sqrt(ᾱ) ε - sqrt(1-ᾱ) x_0; Salimans & Ho 2022)."""
    a = _at(schedule.alphas_cumprod, t, xt.ndim)
    if prediction == "eps":
        return (xt - jnp.sqrt(1.0 - a) * output) / jnp.sqrt(a), output
    if prediction == "v":
        x0 = jnp.sqrt(a) * xt - jnp.sqrt(1.0 - a) * output
        return x0, jnp.sqrt(1.0 - a) * xt + jnp.sqrt(a) * output
    raise ValueError(f"Unknown prediction {prediction!r}; valid: {', '.join(PREDICTIONS)}.")


def eps_from_x0(schedule: Schedule, xt: jax.Array, t: jax.Array, x0: jax.Array) -> jax.Array:
    """The ε for which q_sample(x_0, t, ε) is x_t: (x_t - sqrt(ᾱ_t) x_0) / sqrt(1 - ᾱ_t)."""
    a = _at(schedule.alphas_cumprod, t, xt.ndim)
    return (xt - jnp.sqrt(a) * x0) / jnp.sqrt(1.0 - a)


def target(schedule: Schedule, x0: jax.Array, t: jax.Array, noise: jax.Array,
           prediction: str) -> jax.Array:
    """What the network is trained to output: ε, or v = sqrt(ᾱ_t) ε - sqrt(1 - ᾱ_t) x_0."""
    if prediction == "eps":
        return noise
    a = _at(schedule.alphas_cumprod, t, x0.ndim)
    return jnp.sqrt(a) * noise - jnp.sqrt(1.0 - a) * x0


def snr(schedule: Schedule, t: jax.Array) -> jax.Array:
    """Signal-to-noise ratio ᾱ_t / (1 - ᾱ_t) at index ``t``."""
    a = schedule.alphas_cumprod
    return jnp.asarray(a / (1.0 - a), jnp.float32)[t]


def loss_weight(schedule: Schedule, t: jax.Array, prediction: str, weighting: str,
                gamma: float = 5.0) -> jax.Array:
    """Per-example weight of the squared error: 1 (``none``: L_simple), or min-SNR-γ
    (Hang et al. 2023): min(SNR, γ)/SNR for ε-prediction, min(SNR, γ)/(SNR + 1) for v."""
    if weighting == "none":
        return jnp.ones(jnp.shape(t), jnp.float32)
    if weighting != "min_snr":
        raise ValueError(f"Unknown loss weighting {weighting!r}; valid: {', '.join(WEIGHTINGS)}.")
    s = snr(schedule, t)
    return jnp.minimum(s, gamma) / (s if prediction == "eps" else s + 1.0)


def regression_loss(output: jax.Array, goal: jax.Array, weight: jax.Array) -> jax.Array:
    """weight * mean over pixels of (output - goal)², per example (L_simple at weight 1)."""
    axes = tuple(range(1, output.ndim))
    return weight * jnp.mean(jnp.square(output - goal), axis=axes)


def normal_kl(mean1: jax.Array, logvar1: jax.Array, mean2: jax.Array, logvar2: jax.Array
              ) -> jax.Array:
    """KL(N(mean1, e^logvar1) || N(mean2, e^logvar2)) elementwise, in nats."""
    return 0.5 * (-1.0 + logvar2 - logvar1 + jnp.exp(logvar1 - logvar2)
                  + jnp.square(mean1 - mean2) * jnp.exp(-logvar2))


def discretized_gaussian_log_likelihood(x: jax.Array, mean: jax.Array, log_scale: jax.Array
                                        ) -> jax.Array:
    """log P(x) per pixel for x on the 8-bit grid in [-1, 1]: the mass of N(mean, e^{2 log_scale})
    on [x - 1/255, x + 1/255], with the bin of -1 open to -inf and that of 1 open to +inf.
    Exact (log Φ tails, no 1e-12 floor; `genjax.losses.discretized`), so the 256
    probabilities of a pixel sum to 1."""
    return discretized_log_likelihood(x, mean, log_scale, log_ndtr)


def prior_kl(schedule: Schedule, x0: jax.Array) -> jax.Array:
    """L_T: KL(q(x_{T-1} | x_0) || N(0, I)) per example, nats (the last of ``schedule``)."""
    t = jnp.full(x0.shape[:1], len(schedule) - 1)
    a = _at(schedule.alphas_cumprod, t, x0.ndim)
    kl = normal_kl(jnp.sqrt(a) * x0, jnp.log(1.0 - a), 0.0, 0.0)
    return jnp.sum(kl, axis=tuple(range(1, x0.ndim)))


def vlb_term(schedule: Schedule, x0: jax.Array, xt: jax.Array, t: jax.Array, x0_hat: jax.Array,
             variance: str) -> jax.Array:
    """L_t per example (nats): the KL of the posterior from p(x_{t-1} | x_t) = N(posterior
    mean at x̂_0, σ_t²) for index t >= 1, and the decoder's -log p(x_0 | x_t) at t = 0."""
    axes = tuple(range(1, x0.ndim))
    mean, var = posterior(schedule, x0, xt, t)
    model_mean, _ = posterior(schedule, x0_hat, xt, t)
    logvar = model_log_variance(schedule, t, variance, x0.ndim)
    kl = jnp.sum(normal_kl(mean, jnp.log(jnp.maximum(var, 1e-30)), model_mean, logvar), axis=axes)
    nll = -jnp.sum(discretized_gaussian_log_likelihood(x0, model_mean, 0.5 * logvar), axis=axes)
    return jnp.where(t == 0, nll, kl)


