"""Objectives and evaluation for autoencoders and VAEs, as step ingredients."""

from __future__ import annotations

from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from genjax import precision
from genjax.losses import vae as L
from genjax.steps.common import LossFn

LIKELIHOODS = ("bernoulli", "gaussian")


def outputs_per_pixel(likelihood: str) -> int:
    """Decoder values per pixel: 1 logit (Bernoulli) or mean and log-variance (Gaussian)."""
    if likelihood not in LIKELIHOODS:
        raise ValueError(f"Unknown likelihood {likelihood!r}; valid: {', '.join(LIKELIHOODS)}.")
    return 1 if likelihood == "bernoulli" else 2


def log_likelihood(outputs: jax.Array, x: jax.Array, likelihood: str) -> jax.Array:
    """log p(x | decoder outputs) per example, for the chosen decoder likelihood."""
    if likelihood == "bernoulli":
        return L.bernoulli_log_likelihood(outputs, x)
    mean, log_var = jnp.split(outputs, 2, axis=-1)
    return L.gaussian_log_likelihood(x, mean, log_var)


def decoder_mean(outputs: jax.Array, likelihood: str) -> jax.Array:
    """The mean of p(x | z): the image to show for decoder outputs."""
    if likelihood == "bernoulli":
        return jax.nn.sigmoid(outputs)
    return jnp.split(outputs, 2, axis=-1)[0]


def vae_loss(model: nn.Module, *, likelihood: str = "bernoulli", beta: float = 1.0,
             axis_name: str | None = None, compute_dtype: str = "float32") -> LossFn:
    """Negative (beta-)ELBO averaged over the batch, in nats per example.

    ``axis_name``: under a data-parallel driver, the posterior noise is this replica's
    slice of the one-device draw (`genjax.replica.shard_draw`).
    ``compute_dtype``: the networks' arithmetic (`genjax.precision`); the ELBO's terms
    are always computed in float32.
    """
    outputs_per_pixel(likelihood)  # validate early, before tracing
    apply = precision.in_compute_dtype(model.apply, compute_dtype)

    def loss_fn(params: Any, batch: dict, key: jax.Array):
        x = batch["image"]
        mean, log_var = apply({"params": params}, x, method=model.encode)
        z = L.reparameterize(key, mean, log_var, axis_name=axis_name)
        outputs = apply({"params": params}, z, method=model.decode)
        ll = log_likelihood(outputs, x, likelihood)
        kl = L.kl_standard_normal(mean, log_var)
        loss = -jnp.mean(L.elbo(ll, kl, beta))
        return loss, {"recon_nll": -jnp.mean(ll), "kl": jnp.mean(kl)}

    return loss_fn


def ae_loss(model: nn.Module, *, likelihood: str = "bernoulli", compute_dtype: str = "float32"
            ) -> LossFn:
    """Reconstruction negative log-likelihood of a deterministic autoencoder (networks in
    ``compute_dtype``, the likelihood in float32)."""
    outputs_per_pixel(likelihood)
    apply = precision.in_compute_dtype(model.apply, compute_dtype)

    def loss_fn(params: Any, batch: dict, key: jax.Array):
        del key  # deterministic
        outputs = apply({"params": params}, batch["image"])
        nll = -jnp.mean(log_likelihood(outputs, batch["image"], likelihood))
        return nll, {}

    return loss_fn


def make_vae_bounds(model: nn.Module, *, likelihood: str = "bernoulli",
                    num_samples: int = 1000, chunk: int = 100
                    ) -> Callable[[Any, jax.Array, jax.Array], dict[str, jax.Array]]:
    """Build ``bounds(params, x, key) -> {"elbo", "iwae"}``, each [B]: every image's ELBO
    (beta = 1, one posterior sample, analytic KL) and IWAE bound with ``num_samples``
    importance samples (an estimate of log p(x) from below that tightens as K grows), in
    nats. Samples are decoded ``chunk`` at a time, so K = 5000 fits in memory; the bound
    is `genjax.losses.vae.iwae_bound` of all K log-weights."""
    if num_samples % chunk:
        raise ValueError(f"num_samples ({num_samples}) must be a multiple of chunk ({chunk}).")

    def log_weights(params, x, mean, log_var, key):
        """[chunk, B] log p(x, z_k) - log q(z_k | x) for ``chunk`` posterior samples."""
        tile = lambda a: jnp.broadcast_to(a, (chunk, *a.shape)).reshape(-1, *a.shape[1:])
        mean_k, log_var_k, x_k = tile(mean), tile(log_var), tile(x)
        z = L.reparameterize(key, mean_k, log_var_k)
        outputs = model.apply({"params": params}, z, method=model.decode)
        lw = (log_likelihood(outputs, x_k, likelihood) + L.standard_normal_log_density(z)
              - L.gaussian_log_likelihood(z, mean_k, log_var_k))
        return lw.reshape(chunk, -1)

    def bounds(params: Any, x: jax.Array, key: jax.Array) -> dict[str, jax.Array]:
        mean, log_var = model.apply({"params": params}, x, method=model.encode)
        elbo_key, iwae_key = jax.random.split(key)
        outputs = model.apply({"params": params}, L.reparameterize(elbo_key, mean, log_var),
                              method=model.decode)
        elbo = L.elbo(log_likelihood(outputs, x, likelihood), L.kl_standard_normal(mean, log_var))

        # decode `chunk` samples at a time (the activations of all K would not fit);
        # the K x B log-weights themselves are small
        lw = jax.lax.map(lambda k: log_weights(params, x, mean, log_var, k),
                         jax.random.split(iwae_key, num_samples // chunk))
        return {"elbo": elbo, "iwae": L.iwae_bound(lw.reshape(num_samples, -1))}

    return bounds


def make_vae_eval(model: nn.Module, *, likelihood: str = "bernoulli", num_samples: int = 1000,
                  chunk: int = 100) -> Callable[[Any, dict, jax.Array], dict[str, jax.Array]]:
    """Build ``eval(params, batch, key) -> masked sums`` of `make_vae_bounds`'s test-set
    bounds over the real examples of the batch (``batch["mask"]``): ``neg_elbo`` (-ELBO),
    ``iwae_nll`` (-IWAE bound) and ``count`` (number of real examples). Divide by
    ``count`` after summing over batches."""
    bounds = make_vae_bounds(model, likelihood=likelihood, num_samples=num_samples, chunk=chunk)

    def evaluate(params: Any, batch: dict, key: jax.Array) -> dict[str, jax.Array]:
        found, mask = bounds(params, batch["image"], key), batch["mask"]
        return {"neg_elbo": -jnp.sum(found["elbo"] * mask),
                "iwae_nll": -jnp.sum(found["iwae"] * mask), "count": jnp.sum(mask)}

    return evaluate
