"""Diffusion steps: the training objective, compiled samplers (ancestral DDPM, DDIM,
DPM-Solver++(2M)) with classifier-free guidance, and the variational bound in bits/dim.

Every function here takes the network as ``apply(params, x, t, labels) -> output`` (a
Flax ``apply`` bound to nothing but its arguments) and a `Schedule`; nothing reads a
config. Samplers run ``lax.scan`` over the respaced timesteps, deterministic given a key.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from genjax import replica
from genjax.losses import diffusion as D
from genjax.steps.common import LossFn, check_images, drop_labels, guide, with_null_labels

Apply = Callable[[object, jax.Array, jax.Array, jax.Array | None], jax.Array]
SAMPLERS = ("ddpm", "ddim", "dpm++2m")


def diffusion_loss(apply: Apply, schedule: D.Schedule, *, prediction: str = "eps",
                   weighting: str = "none", snr_gamma: float = 5.0, num_classes: int = 0,
                   label_dropout: float = 0.0, axis_name: str | None = None) -> LossFn:
    """``loss(params, batch, key)``: the weighted regression of ε or v at a uniform
    timestep per example (L_simple for ε with no weighting). With ``num_classes``, each
    label is replaced by the null label ``num_classes`` with probability ``label_dropout``
    (classifier-free guidance trains one network for both)."""
    T = len(schedule)

    def loss(params, batch: dict, key: jax.Array):
        check_images(batch)
        x0 = batch["image"]
        n = x0.shape[0]
        t_key, noise_key, drop_key = jax.random.split(key, 3)
        t = replica.shard_draw(lambda k, s: jax.random.randint(k, s, 0, T), t_key, (n,), axis_name)
        noise = replica.shard_draw(replica.normal, noise_key, x0.shape, axis_name)
        labels = None
        if num_classes:
            labels = drop_labels(drop_key, batch["label"], label_dropout, num_classes, axis_name)
        xt = D.q_sample(schedule, x0, t, noise)
        out = apply(params, xt, t, labels)
        goal = D.target(schedule, x0, t, noise, prediction)
        weight = D.loss_weight(schedule, t, prediction, weighting, snr_gamma)
        value = jnp.mean(D.regression_loss(out, goal, weight))
        return value, {"mse": jnp.mean(jnp.square(out - goal))}  # unweighted

    return loss


def guided_denoiser(apply: Apply, schedule: D.Schedule, *, prediction: str, num_classes: int = 0,
                    guidance: float = 0.0, clip: bool = True):
    """``denoise(params, x_t, i, labels) -> (x̂_0, ε̂)`` at index ``i`` of ``schedule`` (the
    network sees the original timestep ``schedule.timesteps[i]``). With a guidance scale
    w > 0 the output is (1 + w) out(x, c) - w out(x, ∅), both halves in one call; x̂_0 is
    clipped to [-1, 1] when ``clip``, and ε̂ recomputed from the clipped x̂_0."""
    timesteps = jnp.asarray(schedule.timesteps)

    def denoise(params, x: jax.Array, i: jax.Array, labels: jax.Array | None):
        t = jnp.full(x.shape[:1], timesteps[i])
        if num_classes and guidance:
            (xx, tt), both_labels = with_null_labels((x, t), labels, num_classes)
            out = guide(apply(params, xx, tt, both_labels), guidance)
        else:
            out = apply(params, x, t, labels)
        idx = jnp.full(x.shape[:1], i)
        x0, eps = D.predict_x0_eps(schedule, x, idx, out, prediction)
        if clip:
            x0 = jnp.clip(x0, -1.0, 1.0)
            eps = D.eps_from_x0(schedule, x, idx, x0)
        return x0, eps

    return denoise


def _coefficients(schedule: D.Schedule) -> dict[str, jax.Array]:
    """Per-index α = sqrt(ᾱ), σ = sqrt(1 - ᾱ) and those of the next (less noisy) index,
    which after index 0 is the data (ᾱ = 1)."""
    a = schedule.alphas_cumprod
    a_next = np.concatenate([[1.0], a[:-1]])
    f = lambda v: jnp.asarray(v, jnp.float32)
    return {"alpha": f(np.sqrt(a)), "sigma": f(np.sqrt(1.0 - a)), "a": f(a),
            "alpha_next": f(np.sqrt(a_next)), "sigma_next": f(np.sqrt(1.0 - a_next)),
            "a_next": f(a_next), "lam": f(0.5 * np.log(a / (1.0 - a)))}


def _ddpm_update(schedule: D.Schedule, variance: str):
    """Ancestral step of p(x_{i-1} | x_i): the posterior mean at x̂_0 plus σ_i z (no noise
    at i = 0)."""
    def update(x, x0, eps, i, carry, key):
        del eps
        idx = jnp.full(x.shape[:1], i)
        mean, _ = D.posterior(schedule, x0, x, idx)
        logvar = D.model_log_variance(schedule, idx, variance, x.ndim)
        z = jax.random.normal(key, x.shape)
        return mean + jnp.where(i > 0, jnp.exp(0.5 * logvar), 0.0) * z, carry
    return update


def _ddim_update(schedule: D.Schedule, eta: float):
    """Song et al. 2021: x_{i-1} = sqrt(ᾱ') x̂_0 + sqrt(1 - ᾱ' - s²) ε̂ + s z with
    s = η sqrt((1 - ᾱ')/(1 - ᾱ)) sqrt(1 - ᾱ/ᾱ') (deterministic at η = 0)."""
    c = _coefficients(schedule)

    def update(x, x0, eps, i, carry, key):
        a, a_next = c["a"][i], c["a_next"][i]
        s = eta * jnp.sqrt((1.0 - a_next) / (1.0 - a) * (1.0 - a / a_next))
        z = jax.random.normal(key, x.shape)
        return (jnp.sqrt(a_next) * x0 + jnp.sqrt(jnp.maximum(1.0 - a_next - s * s, 0.0)) * eps
                + s * z), carry
    return update


def _dpm_update(schedule: D.Schedule):
    """DPM-Solver++(2M) (Lu et al. 2022, data prediction, multistep): with h = λ' - λ and
    λ = log(α/σ), x' = (σ'/σ) x + α'(1 - e^{-h}) D, where D = x̂_0 on the first and last
    steps and (1 + 1/2r) x̂_0 - (1/2r) x̂_0(previous) otherwise, r = h_previous / h."""
    c = _coefficients(schedule)
    last = 0

    def update(x, x0, eps, i, carry, key):
        del eps, key
        prev_x0, prev_h, first = carry
        alpha, sigma = c["alpha"][i], c["sigma"][i]
        alpha_n, sigma_n = c["alpha_next"][i], c["sigma_next"][i]
        final = i == last
        lam_n = jnp.log(alpha_n / jnp.where(final, 1.0, sigma_n))  # unused at the final step
        h = jnp.where(final, 1.0, lam_n - c["lam"][i])
        r = prev_h / h
        second = (1.0 + 0.5 / r) * x0 - (0.5 / r) * prev_x0
        d = jnp.where(first | final, x0, second)
        x_next = (sigma_n / sigma) * x + (alpha_n - sigma_n * alpha / sigma) * d
        return x_next, (x0, h, jnp.array(False))
    return update


def make_sampler(apply: Apply, schedule: D.Schedule, *, sampler: str, steps: int,
                 prediction: str, variance: str = "large", eta: float = 0.0,
                 num_classes: int = 0, guidance: float = 0.0, clip: bool = True,
                 trajectory: int = 0):
    """``sample(params, key, shape, labels) -> (x_0, snapshots)``, one compiled ``lax.scan``
    over ``steps`` timesteps spread over the schedule. ``snapshots`` holds x_t at
    ``trajectory`` evenly spaced steps (x_T first, the result last), or is None."""
    if sampler not in SAMPLERS:
        raise ValueError(f"Unknown sampler {sampler!r}; valid: {', '.join(SAMPLERS)}.")
    sub = D.respace(schedule, D.spaced_timesteps(len(schedule), steps))
    denoise = guided_denoiser(apply, sub, prediction=prediction, num_classes=num_classes,
                              guidance=guidance, clip=clip)
    update = {"ddpm": lambda: _ddpm_update(sub, variance), "ddim": lambda: _ddim_update(sub, eta),
              "dpm++2m": lambda: _dpm_update(sub)}[sampler]()
    k = len(sub)
    keep = sorted(set(np.round(np.linspace(0, k, trajectory)).astype(int).tolist()))

    def sample(params, key: jax.Array, shape: tuple[int, ...], labels: jax.Array | None = None):
        start_key, step_key = jax.random.split(key)
        x = jax.random.normal(start_key, shape)
        first = (jnp.zeros(shape), jnp.ones(()), jnp.array(True))

        def body(carry, inputs):
            x, extra = carry
            i, key = inputs
            x0, eps = denoise(params, x, i, labels)
            x, extra = update(x, x0, eps, i, extra, key)
            return (x, extra), (x if trajectory else None)

        order = jnp.arange(k - 1, -1, -1)
        x_T = x
        (x, _), xs = jax.lax.scan(body, (x, first), (order, jax.random.split(step_key, k)))
        if not trajectory:
            return x, None
        return x, jnp.concatenate([x_T[None], xs])[np.array(keep)]

    return sample


def strata(num_timesteps: int, count: int) -> np.ndarray:
    """Boundaries of ``count`` near-equal strata of the KL indices 1..T-1 ([count + 1])."""
    count = min(count, num_timesteps - 1)
    return np.round(np.linspace(1, num_timesteps, count + 1)).astype(np.int32)


def make_vlb(apply: Apply, schedule: D.Schedule, *, prediction: str, variance: str = "large",
             timesteps: int = 0, clip: bool = True):
    """``vlb(params, batch, key) -> sums``: `make_image_bound`'s bound on -log p(x_0) of
    each 8-bit image (nats and bits/dim, and its prior and decoder parts), summed over the
    batch's real rows (``mask``), with the squared bits/dim and the count."""
    image_bound = make_image_bound(apply, schedule, prediction=prediction, variance=variance,
                                   timesteps=timesteps, clip=clip)

    def vlb(params, batch: dict, key: jax.Array) -> dict[str, jax.Array]:
        x0, mask = batch["image"], batch["mask"]
        dims = int(np.prod(x0.shape[1:]))
        parts = image_bound(params, x0, key)
        bpd = D.bits_per_dim(parts["nats"], dims)
        return {"nll_bound": jnp.sum(parts["nats"] * mask), "bits_per_dim": jnp.sum(bpd * mask),
                "bits_per_dim_sq": jnp.sum(bpd * bpd * mask),
                "prior_bits_per_dim": jnp.sum(D.bits_per_dim(parts["prior"], dims) * mask),
                "decoder_bits_per_dim": jnp.sum(D.bits_per_dim(parts["decoder"], dims) * mask),
                "count": jnp.sum(mask)}

    return vlb


def make_image_bound(apply: Apply, schedule: D.Schedule, *, prediction: str,
                     variance: str = "large", timesteps: int = 0, clip: bool = True):
    """``bound(params, x0, key) -> {"nats", "prior", "decoder"}`` [B] each: the
    variational bound on -log p(x_0) of each 8-bit image in nats, and its prior and
    decoder terms.

    L_T and the decoder term L_0 are exact. The T - 1 KL terms are summed exactly when
    ``timesteps`` is 0 or at least T - 1; otherwise they are estimated without bias by
    stratified sampling: ``timesteps`` strata of consecutive indices, one uniform index
    per stratum and image, weighted by the stratum's size (the standard error over
    images then includes the sampling of t). Classes, when the model has them, are not used: the bound is that of
    the unconditional model (label ``num_classes`` is passed by the caller's ``apply``).
    """
    T = len(schedule)
    bounds = jnp.asarray(strata(T, timesteps or T - 1))

    def term(params, x0, t, key):
        xt = D.q_sample(schedule, x0, t, jax.random.normal(key, x0.shape))
        out = apply(params, xt, t, None)
        x0_hat, _ = D.predict_x0_eps(schedule, xt, t, out, prediction)
        x0_hat = jnp.clip(x0_hat, -1.0, 1.0) if clip else x0_hat
        return D.vlb_term(schedule, x0, xt, t, x0_hat, variance)

    def bound(params, x0: jax.Array, key: jax.Array) -> dict[str, jax.Array]:
        n = x0.shape[0]
        zero_key, t_key = jax.random.split(key)
        prior = D.prior_kl(schedule, x0)
        decoder = term(params, x0, jnp.zeros((n,), jnp.int32), zero_key)

        def stratum(total, inputs):
            lo, hi, k = inputs
            t_k, n_k = jax.random.split(k)
            t = jax.random.randint(t_k, (n,), lo, hi)
            return total + (hi - lo) * term(params, x0, t, n_k), None

        keys = jax.random.split(t_key, len(bounds) - 1)
        kl, _ = jax.lax.scan(stratum, jnp.zeros((n,)), (bounds[:-1], bounds[1:], keys))
        return {"nats": prior + decoder + kl, "prior": prior, "decoder": decoder}

    return bound
