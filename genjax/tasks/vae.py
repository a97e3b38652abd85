"""Autoencoders and VAEs: config -> model, optimizer, step, evaluation, pictures."""

from __future__ import annotations

from typing import Iterable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from genjax import nn as gnn
from genjax import rng
from genjax import state as gstate
from genjax.steps import make_train_step
from genjax.steps import vae as vsteps
from genjax.tasks.common import (Task, check_image_shape, make_optimizer, per_image, sampler,
                                 to_unit_range)

ARCHITECTURES = ("mlp", "conv")


def build_model(config: ml_collections.ConfigDict, image_shape: tuple[int, int, int]):
    """The (V)AE named by ``config.model`` / ``config.deterministic`` for ``image_shape``."""
    per_pixel = vsteps.outputs_per_pixel(config.likelihood)
    code = config.latent_dim * (1 if config.deterministic else 2)
    if config.model == "mlp":
        hidden = tuple(config.hidden)
        enc = gnn.MLPEncoder(code, hidden)
        dec = gnn.MLPDecoder(image_shape, hidden[::-1], per_pixel)
    elif config.model == "conv":
        feats = tuple(config.conv_features)
        check_image_shape(config, image_shape, f"model 'conv' with config.conv_features={feats}",
                          gnn.conv_decoder_takes(image_shape, len(feats)))
        enc = gnn.ConvEncoder(code, feats)
        dec = gnn.ConvDecoder(image_shape, feats[::-1], per_pixel, fast=config.fast_layers)
    else:
        raise ValueError(f"Unknown model {config.model!r}; valid: {', '.join(ARCHITECTURES)}.")
    return (gnn.AutoEncoder if config.deterministic else gnn.VAE)(enc, dec)


def _make_init(model, tx: optax.GradientTransformation, image_shape: tuple[int, int, int],
               deterministic: bool):
    """``init(key) -> TrainState``: parameters, the optimizer and the state's rng, each
    from its own split of ``key`` (a VAE's forward pass also draws posterior noise)."""
    dummy = np.zeros((1, *image_shape), np.float32)  # numpy: nothing compiles before init

    def init(key: jax.Array) -> gstate.TrainState:
        param_key, noise_key, state_rng = jax.random.split(key, 3)
        args = (dummy,) if deterministic else (dummy, noise_key)
        params = model.init(param_key, *args)["params"]
        return gstate.create(state_rng, {"model": gstate.create_net(params, tx)})

    return init


def _make_evaluate(model, config: ml_collections.ConfigDict):
    """``evaluate(state, batches)``: test-set means of the reconstruction NLL (AE) or of
    -ELBO and the IWAE bound (VAE), over the real rows of every batch."""
    if config.deterministic:
        eval_fn = jax.jit(lambda p, b, k: _ae_eval(model, config.likelihood, p, b))
    else:
        k = config.iwae_samples
        eval_fn = jax.jit(vsteps.make_vae_eval(model, likelihood=config.likelihood,
                                               num_samples=k, chunk=min(k, 100)))
    eval_key = rng.stream(config.seed, "eval_metrics")  # the same noise every evaluation

    def evaluate(state: gstate.TrainState, batches: Iterable[dict]) -> dict[str, float]:
        params = state.nets["model"].params
        totals = None
        for i, batch in enumerate(batches):
            sums = eval_fn(params, batch, jax.random.fold_in(eval_key, i))
            totals = sums if totals is None else jax.tree.map(jnp.add, totals, sums)
        totals = jax.device_get(totals)
        count = totals.pop("count")
        names = {"iwae_nll": f"iwae_nll_k{config.iwae_samples}"}
        return {f"test/{names.get(k, k)}": float(v / count) for k, v in totals.items()}

    return evaluate


def _make_log_likelihood(model, config: ml_collections.ConfigDict):
    """A VAE's per-image IWAE estimate of log p(x) with ``config.iwae_samples`` samples
    (`Task.log_likelihood`), drawn as the evaluation draws its ``test/iwae_nll_k<K>``;
    None for an autoencoder."""
    if config.deterministic:
        return None
    k = config.iwae_samples
    bounds = vsteps.make_vae_bounds(model, likelihood=config.likelihood, num_samples=k,
                                    chunk=min(k, 100))
    value = jax.jit(lambda state, batch, key: bounds(state.nets["model"].params, batch["image"],
                                                     key)["iwae"])
    return per_image(value, rng.stream(config.seed, "eval_metrics"))


def _make_images(model, config: ml_collections.ConfigDict):
    """``images(state, batch)``: reconstructions of the batch's first 32 images, paired with
    their originals, and (VAE) 64 samples from the prior's fixed grid noise."""
    grid_key = rng.stream(config.seed, "sample_grid")

    @jax.jit
    def pictures(params, x):
        variables = {"params": params}
        mean_image = lambda out: vsteps.decoder_mean(out, config.likelihood)
        if config.deterministic:
            recon, samples = mean_image(model.apply(variables, x)), None
        else:
            mean, _ = model.apply(variables, x, method=model.encode)
            recon = mean_image(model.apply(variables, mean, method=model.decode))
            z = jax.random.normal(grid_key, (64, config.latent_dim))
            samples = mean_image(model.apply(variables, z, method=model.decode))
        pairs = jnp.stack([x, recon], axis=1).reshape(-1, *x.shape[1:])  # original, recon, ...
        return pairs, samples

    def images(state: gstate.TrainState, batch: dict) -> dict[str, np.ndarray]:
        pairs, samples = pictures(state.nets["model"].params, batch["image"][:32])
        out = {"reconstructions": pairs, **({} if samples is None else {"samples": samples})}
        return {k: np.asarray(to_unit_range(v, config.preprocess)) for k, v in out.items()}

    return images


def build(config: ml_collections.ConfigDict, image_shape: tuple[int, int, int],
          axis_name: str | None = None) -> Task:
    """Assemble the VAE / AE task; ``axis_name``: the data-parallel axis of the step.

    Config keys: model, deterministic, latent_dim, hidden, conv_features, likelihood,
    beta, learning_rate, iwae_samples, preprocess, seed.
    """
    model = build_model(config, image_shape)
    tx = make_optimizer("adam", config.learning_rate)
    det, dtype = config.deterministic, config.compute_dtype
    loss = (vsteps.ae_loss(model, likelihood=config.likelihood, compute_dtype=dtype) if det else
            vsteps.vae_loss(model, likelihood=config.likelihood, beta=config.beta,
                            axis_name=axis_name, compute_dtype=dtype))

    @jax.jit
    def _draw(state: gstate.TrainState, key: jax.Array) -> jax.Array:
        z = jax.random.normal(key, (config.eval_batch_size, config.latent_dim))
        out = model.apply({"params": state.nets["model"].params}, z, method=model.decode)
        return to_unit_range(vsteps.decoder_mean(out, config.likelihood), config.preprocess)

    return Task(init=_make_init(model, tx, image_shape, det),
                train_step=make_train_step(loss, tx, axis_name=axis_name),
                evaluate=_make_evaluate(model, config), images=_make_images(model, config),
                examples_per_step=config.batch_size,
                sample=None if det else sampler(_draw, config.eval_batch_size),
                log_likelihood=_make_log_likelihood(model, config))


def _ae_eval(model, likelihood: str, params, batch: dict) -> dict[str, jax.Array]:
    outputs = model.apply({"params": params}, batch["image"])
    nll = -vsteps.log_likelihood(outputs, batch["image"], likelihood)
    return {"recon_nll": jnp.sum(nll * batch["mask"]), "count": jnp.sum(batch["mask"])}
