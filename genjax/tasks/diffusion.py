"""Diffusion models: config -> U-Net, schedule, optimizer, step (with EMA), the bound in
bits/dim, samplers and pictures."""

from __future__ import annotations

from typing import Iterable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from genjax import precision, rng
from genjax import state as gstate
from genjax.losses import diffusion as D
from genjax.nn.diffusion import UNet
from genjax.steps import make_train_step, with_ema
from genjax.steps import diffusion as dsteps
from genjax.tasks.common import (Task, class_accuracy, make_optimizer, mean_and_stderr,
                                 per_image, sampler, to_unit_range)

TRAJECTORY_IMAGES, TRAJECTORY_SNAPSHOTS = 10, 10  # the x_T -> x_0 grid: one row per image


def check(config: ml_collections.ConfigDict, image_shape: tuple[int, ...]) -> None:
    """Refuse names and sizes the diffusion pieces cannot use, before anything compiles."""
    for field, valid in (("schedule", D.SCHEDULES), ("prediction", D.PREDICTIONS),
                         ("variance", D.VARIANCES), ("bound_variance", D.VARIANCES),
                         ("loss_weighting", D.WEIGHTINGS),
                         ("sampler", dsteps.SAMPLERS)):
        value = bound_variance(config) if field == "bound_variance" else config[field]
        if value not in valid:
            raise ValueError(f"config.{field} must be one of {', '.join(valid)}, got {value!r}.")
    if config.preprocess != "symmetric":
        raise ValueError(f"Diffusion models noise images in [-1, 1]: config.preprocess must be "
                         f"'symmetric', got {config.preprocess!r}.")
    if config.sample_steps > config.timesteps:
        raise ValueError(f"config.sample_steps ({config.sample_steps}) cannot exceed "
                         f"config.timesteps ({config.timesteps}).")
    widths = [config.channels * m for m in config.channel_mult]
    if any(w % config.groups for w in widths):
        raise ValueError(f"Every U-Net width {widths} must divide by config.groups "
                         f"({config.groups}) for GroupNorm.")
    if config.guidance and not config.num_classes:
        raise ValueError(f"config.guidance={config.guidance} needs a conditional model "
                         f"(config.num_classes > 0).")


def bound_variance(config: ml_collections.ConfigDict) -> str:
    """The reverse-step σ² of the bound's KL terms (``config.bound_variance``); a run whose
    recorded config has no such field used its sampler's ``variance`` for the bound too."""
    return config.get("bound_variance", config.variance)


def build_model(config: ml_collections.ConfigDict) -> UNet:
    """The U-Net of ``config`` (channels, channel_mult, num_res_blocks, attention, classes)."""
    return UNet(config.channels, tuple(config.channel_mult), config.num_res_blocks,
                config.attention, config.num_classes, config.groups)


def _apply(model: UNet, config: ml_collections.ConfigDict) -> dsteps.Apply:
    """``apply(params, x, t, labels)`` in the compute dtype; labels None = unconditional."""
    run = precision.in_compute_dtype(model.apply, config.compute_dtype)
    k = config.num_classes

    def apply(params, x, t, labels=None):
        if k and labels is None:
            labels = jnp.full(x.shape[:1], k, jnp.int32)
        return run({"params": params}, x, t, labels if k else None)

    return apply


def make_sampler(config: ml_collections.ConfigDict, apply: dsteps.Apply, schedule: D.Schedule,
                 trajectory: int = 0):
    """The sampler the config names (sampler, sample_steps, eta, guidance, variance)."""
    return dsteps.make_sampler(apply, schedule, sampler=config.sampler, steps=config.sample_steps,
                               prediction=config.prediction, variance=config.variance,
                               eta=config.eta, num_classes=config.num_classes,
                               guidance=config.guidance, clip=config.clip_denoised,
                               trajectory=trajectory)


def sampling_params(state: gstate.TrainState):
    """The weights samples are drawn with: the EMA when kept, else the trained ones."""
    return state.extra.get("ema", state.nets["model"].params)


def _make_evaluate(config: ml_collections.ConfigDict, apply, schedule, image_shape, sample):
    """``evaluate(state, batches)``: the bound on the test images in bits/dim (mean and
    standard error over images; the first whole batches holding ``config.bound_images``
    images, or all when 0), its prior and decoder parts, and, for a conditional
    model on MNIST-like data, the domain classifier's accuracy on the asked classes."""
    vlb = jax.jit(dsteps.make_vlb(apply, schedule, prediction=config.prediction,
                                  variance=bound_variance(config), timesteps=config.vlb_timesteps,
                                  clip=config.clip_denoised))
    accuracy = class_accuracy(config, image_shape, sample)
    eval_key = rng.stream(config.seed, "eval_bound")  # apart from the class check's samples

    def evaluate(state: gstate.TrainState, batches: Iterable[dict]) -> dict[str, float]:
        params, totals, seen = sampling_params(state), None, 0
        for i, batch in enumerate(batches):
            if config.bound_images and seen >= config.bound_images:
                break
            sums = vlb(params, batch, jax.random.fold_in(eval_key, i))
            totals = sums if totals is None else jax.tree.map(jnp.add, totals, sums)
            seen += int(np.sum(batch["mask"]))
        t = {k: float(v) for k, v in jax.device_get(totals).items()}
        n = t["count"]
        mean, stderr = mean_and_stderr(t["bits_per_dim"], t["bits_per_dim_sq"], n)
        return {"test/bits_per_dim": mean, "test/bits_per_dim_stderr": stderr,
                "test/nll_bound": t["nll_bound"] / n,
                "test/prior_bits_per_dim": t["prior_bits_per_dim"] / n,
                "test/decoder_bits_per_dim": t["decoder_bits_per_dim"] / n,
                **accuracy(state, ())}

    return evaluate


def _make_log_likelihood(config: ml_collections.ConfigDict, apply, schedule):
    """Each image's variational bound on log p(x_0) in nats, as the evaluation computes its
    ``test/nll_bound`` (`Task.log_likelihood`; the unconditional model's, EMA weights
    where kept)."""
    bound = dsteps.make_image_bound(apply, schedule, prediction=config.prediction,
                                    variance=bound_variance(config),
                                    timesteps=config.vlb_timesteps, clip=config.clip_denoised)
    value = jax.jit(lambda state, batch, key: -bound(sampling_params(state), batch["image"],
                                                     key)["nats"])
    return per_image(value, rng.stream(config.seed, "eval_bound"))


def _make_images(config, apply, schedule, image_shape):
    """``images(state, batch)``: a grid of samples from fixed noise (one row per class for
    a conditional model) and the denoising trajectory x_T -> x_0 of a few of them."""
    k, preprocess = config.num_classes, config.preprocess
    grid_key = rng.stream(config.seed, "sample_grid")
    path = make_sampler(config, apply, schedule, trajectory=TRAJECTORY_SNAPSHOTS)
    n = k * k if k else 64
    labels = jnp.repeat(jnp.arange(k), k) if k else None
    # One row per class image of the grid (every k-th one) when conditional, else the first.
    rows = np.arange(TRAJECTORY_IMAGES) * (k if k and k * TRAJECTORY_IMAGES <= n else 1)

    @jax.jit
    def pictures(params):
        samples, states = path(params, grid_key, (n, *image_shape), labels)
        # [images, snapshots, H, W, C]: one row per image, x_T on the left, however many
        # snapshots the sampler's steps allow (`genjax.report.image_grid`)
        return samples, jnp.swapaxes(states[:, rows], 0, 1)

    def images(state: gstate.TrainState, batch: dict) -> dict[str, np.ndarray]:
        del batch
        samples, trajectory = pictures(sampling_params(state))
        return {"samples": np.asarray(to_unit_range(samples, preprocess)),
                "trajectory": np.asarray(to_unit_range(trajectory, preprocess))}

    return images


def build(config: ml_collections.ConfigDict, image_shape: tuple[int, ...],
          axis_name: str | None = None) -> Task:
    """Assemble the diffusion task (see genjax/configs/ddpm_mnist.py for the fields)."""
    check(config, image_shape)
    model, schedule = build_model(config), D.make_schedule(config.schedule, config.timesteps)
    apply = _apply(model, config)
    tx = make_optimizer("adam", config.learning_rate, clip_norm=config.clip_norm or None)
    loss = dsteps.diffusion_loss(apply, schedule, prediction=config.prediction,
                                 weighting=config.loss_weighting, snr_gamma=config.snr_gamma,
                                 num_classes=config.num_classes,
                                 label_dropout=config.label_dropout, axis_name=axis_name)
    step = make_train_step(loss, tx, axis_name=axis_name)
    step = with_ema(step, config.ema_decay) if config.ema_decay else step
    dummy = (np.zeros((1, *image_shape), np.float32), np.zeros((1,), np.int32))

    def init(key: jax.Array) -> gstate.TrainState:
        param_key, state_rng = jax.random.split(key)
        labels = np.zeros((1,), np.int32) if config.num_classes else None
        params = model.init(param_key, *dummy, labels)["params"]
        extra = {"ema": params} if config.ema_decay else {}
        return gstate.create(state_rng, {"model": gstate.create_net(params, tx)}, extra)

    b = config.eval_batch_size
    eval_labels = jnp.arange(b) % config.num_classes if config.num_classes else None
    draw = make_sampler(config, apply, schedule)

    @jax.jit
    def _draw(state: gstate.TrainState, key: jax.Array) -> jax.Array:
        x, _ = draw(sampling_params(state), key, (b, *image_shape), eval_labels)
        return to_unit_range(x, config.preprocess)

    sample = sampler(_draw, b)
    return Task(init=init, train_step=step,
                evaluate=_make_evaluate(config, apply, schedule, image_shape, sample),
                images=_make_images(config, apply, schedule, image_shape),
                examples_per_step=config.batch_size, sample=sample,
                log_likelihood=_make_log_likelihood(config, apply, schedule))
