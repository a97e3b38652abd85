"""Normalizing flows (RealNVP, Glow, MAF, coupling flows on 2-D points): config -> flow,
optimizer, step, ActNorm's data-dependent initialisation, test bits/dim, samples and
reconstructions, mode coverage on the 2-D mixtures."""

from __future__ import annotations

from typing import Iterable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from genjax import rng
from genjax import state as gstate
from genjax.losses import flows as L
from genjax.metrics.modes import mode_metrics
from genjax.nn import flows as F
from genjax.nn.maf import MAF
from genjax.steps import make_train_step
from genjax.steps import flows as fsteps
from genjax.tasks.common import (Task, check_image_shape, make_optimizer, mean_and_stderr,
                                 per_image, sampler, to_unit_range)

MODELS = ("realnvp", "glow", "maf", "points")
RECONSTRUCTIONS = 50  # test digits in the x -> z -> x grid


def check(config: ml_collections.ConfigDict, image_shape: tuple[int, ...]) -> None:
    """Refuse names and combinations the flows cannot use, before anything compiles."""
    if config.model not in MODELS:
        raise ValueError(f"config.model must be one of {', '.join(MODELS)}, got {config.model!r}.")
    if config.get("coupling", "affine") not in F.COUPLINGS:
        raise ValueError(f"config.coupling must be one of {', '.join(F.COUPLINGS)}, "
                         f"got {config.coupling!r}.")
    if config.model == "points":
        if len(image_shape) != 1 or config.preprocess != "raw":
            raise ValueError(f"config.model='points' fits points [D] with preprocess='raw' (the "
                             f"gaussian_mixtures datasets), got shape {image_shape} and "
                             f"preprocess={config.preprocess!r}.")
        return
    if config.get("coupling", "affine") != "affine":
        raise ValueError(f"The image flows have affine couplings; config.coupling="
                         f"{config.coupling!r} is for model='points'.")
    if len(image_shape) != 3:
        raise ValueError(f"Image flows take images [H, W, C], got shape {image_shape}; use "
                         f"config.model='points' for points.")
    for field in ("preprocess", "eval_preprocess"):
        if (config.get(field) or config.preprocess) != "unit":
            raise ValueError(f"Image flows dequantise 8-bit pixels k/255: config.{field} must "
                             f"be 'unit', got {config.get(field)!r}.")
    if not 0 < config.alpha < 0.5:
        raise ValueError(f"config.alpha (the logit's margin) must be in (0, 0.5), got {config.alpha}.")
    if config.model != "maf":
        check_image_shape(config, image_shape, f"the {config.model} flow with "
                          f"config.levels={config.levels}",
                          F.multiscale_takes(image_shape, config.levels))
        F.plan(image_shape, config.model, config.levels, config.num_layers)  # raises on bad sizes


def build_model(config: ml_collections.ConfigDict, image_shape: tuple[int, ...]):
    """The flow of ``config.model`` for data of ``image_shape``."""
    if config.model == "points":
        return F.PointFlow(image_shape[0], config.num_layers, config.width, config.num_blocks,
                           config.coupling, config.bins)
    if config.model == "maf":
        return MAF(tuple(image_shape), config.num_layers, config.width, config.num_blocks,
                   config.alpha)
    return F.MultiScaleFlow(tuple(image_shape), config.model, config.levels, config.num_layers,
                            config.width, config.num_blocks, config.alpha)


def _mixture(config: ml_collections.ConfigDict) -> str | None:
    """The 2-D mixture's name (``ring8``, ``grid25``) when the data is one."""
    name = config.dataset.split("/")
    return name[1] if name[0] == "gaussian_mixtures" and len(name) == 2 else None


def _make_evaluate(config, forward, inverse, image_shape, sample):
    """``evaluate(state, batches)``: -log P of the test set in nats per example (mean and
    standard error; images: ``config.eval_draws`` dequantisation draws each) and bits/dim;
    the inversion error on the first test batch; mode coverage on the 2-D mixtures."""
    images = config.model != "points"
    evaluate_batch = jax.jit(fsteps.make_eval(forward, images, config.eval_draws))
    dims = int(np.prod(image_shape))
    key, trip_key = _eval_keys(config)

    @jax.jit
    def round_trip_error(params, x):
        """max |x - inverse(forward(x))| (images dequantised first)."""
        if images:
            x = L.dequantize(x, jax.random.uniform(trip_key, x.shape))
        return jnp.max(jnp.abs(inverse(params, forward(params, x)[0])[0] - x))

    def evaluate(state: gstate.TrainState, batches: Iterable[dict]) -> dict[str, float]:
        params, totals, first = state.nets["model"].params, None, None
        for i, batch in enumerate(batches):
            sums = evaluate_batch(params, batch, jax.random.fold_in(key, i))
            totals = sums if totals is None else jax.tree.map(jnp.add, totals, sums)
            first = batch["image"] if first is None else first
        t = {k: float(v) for k, v in jax.device_get(totals).items()}
        mean, stderr = mean_and_stderr(t["nll"], t["nll_sq"], t["count"])
        out = {"test/nll": mean, "test/nll_stderr": stderr,
               "test/inversion_error": float(round_trip_error(params, first))}
        if images:
            out["test/bits_per_dim"] = float(L.bits_per_dim(mean, dims))
        if _mixture(config):
            from genjax.data import mixtures  # its tfds builder: imported only for its data

            name = _mixture(config)
            points = np.concatenate(list(sample(state, rng.stream(config.seed, "eval_samples"),
                                                config.eval_samples)))
            found = mode_metrics(points, mixtures.centers(name), mixtures.STDS[name])
            out.update({f"test/{k}": float(v) for k, v in found.items()})
        return out

    return evaluate


def _eval_keys(config) -> tuple[jax.Array, jax.Array]:
    """(the test NLL's key, folded in per batch; the round trip's key)."""
    return tuple(jax.random.split(rng.stream(config.seed, "eval_metrics")))


def _make_log_likelihood(config, forward):
    """Each example's log P in nats as the evaluation computes its ``test/nll``
    (`Task.log_likelihood`): images dequantised with ``config.eval_draws`` draws, points
    exactly."""
    image_nll = fsteps.make_image_nll(forward, config.model != "points", config.eval_draws)
    value = jax.jit(lambda state, batch, key: -image_nll(state.nets["model"].params, batch, key))
    return per_image(value, _eval_keys(config)[0])


def _make_images(config, forward, inverse, draw):
    """``images(state, batch)``: samples at ``config.temperature`` from a fixed key, and
    reconstructions (each test digit, dequantised, through z and back, beside itself)."""
    if config.model == "points":
        return lambda state, batch: {}
    sample_key, noise_key = jax.random.split(rng.stream(config.seed, "sample_grid"))

    @jax.jit
    def pictures(params, x):
        x = L.dequantize(x, jax.random.uniform(noise_key, x.shape))
        back = inverse(params, forward(params, x)[0])[0]
        pairs = jnp.stack([x, back], axis=1).reshape(-1, *x.shape[1:])
        return draw(params, sample_key, 100), pairs

    def images(state: gstate.TrainState, batch: dict) -> dict[str, np.ndarray]:
        samples, pairs = pictures(state.nets["model"].params,
                                  jnp.asarray(batch["image"][:RECONSTRUCTIONS]))
        unit = lambda x: np.asarray(to_unit_range(x, "unit"))  # noqa: E731
        return {"samples": unit(samples), "reconstructions": unit(pairs)}

    return images


def make_data_init(config, model, tx):
    """``data_init(state, batch)``: the fresh state with ActNorm set from ``batch`` (images
    dequantised with a fixed key first) and a fresh optimizer state."""
    key = rng.stream(config.seed, "data_init")

    def data_init(state: gstate.TrainState, batch: dict) -> gstate.TrainState:
        x = batch["image"]
        if config.model != "points":
            x = L.dequantize(x, jax.random.uniform(key, x.shape))
        params = F.data_init(model, state.nets["model"].params, x)
        return state.replace(nets={"model": gstate.create_net(params, tx)})

    return data_init


def build(config: ml_collections.ConfigDict, image_shape: tuple[int, ...],
          axis_name: str | None = None) -> Task:
    """Assemble the flow task (see genjax/configs/realnvp_mnist.py)."""
    check(config, image_shape)
    model = build_model(config, image_shape)
    forward, inverse = F.bijector_fns(model)
    images = config.model != "points"
    tx = make_optimizer("adam", config.learning_rate, clip_norm=config.clip_norm or None,
                        decay_steps=config.num_steps if config.get("lr_decay") == "cosine" else 0)
    step = make_train_step(fsteps.nll_loss(forward, images, axis_name), tx, axis_name=axis_name)
    dummy = np.full((1, *image_shape), 0.5, np.float32)

    def init(key: jax.Array) -> gstate.TrainState:
        param_key, state_rng = jax.random.split(key)
        params = model.init(param_key, dummy, method="forward")["params"]
        return gstate.create(state_rng, {"model": gstate.create_net(params, tx)})

    b = config.eval_batch_size
    draw = fsteps.make_sampler(inverse, tuple(image_shape), config.temperature)

    @jax.jit
    def _draw(state: gstate.TrainState, key: jax.Array) -> jax.Array:
        x = draw(state.nets["model"].params, key, b)
        return to_unit_range(x, "unit") if images else x

    sample = sampler(_draw, b)
    return Task(init=init, train_step=step,
                evaluate=_make_evaluate(config, forward, inverse, image_shape, sample),
                images=_make_images(config, forward, inverse, draw),
                examples_per_step=config.batch_size, sample=sample,
                data_init=make_data_init(config, model, tx),
                log_likelihood=_make_log_likelihood(config, forward))
