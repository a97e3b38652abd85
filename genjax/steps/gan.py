"""The GAN train step: ``n_critic`` discriminator updates, then one generator update.

One factory serves every objective (BCE, LSGAN, WGAN, WGAN-GP, hinge, R1, clipping,
spectral norm, EMA); the options are static, so each configuration compiles to a
single fused step. The state holds ``nets["gen"]``, ``nets["disc"]`` and, in
``extra``, ``"spectral"`` (power-iteration vectors, possibly empty) and, when EMA is
on, ``"ema"`` (the generator's averaged parameters).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from genjax import parallel, spectral
from genjax.losses import gan as gan_losses
from genjax.losses import penalties
from genjax.state import NetState, TrainState, step_key
from genjax.steps.common import Metrics, StepFn


def apply_net(module: nn.Module, params: Any, batch_stats: Any, x: jax.Array, *, train: bool
              ) -> tuple[jax.Array, Any]:
    """Run a generator or discriminator; returns (outputs, updated batch_stats).

    Batch statistics are updated only when ``train`` and the network has BatchNorm.
    """
    variables = {"params": params, **({"batch_stats": batch_stats} if batch_stats else {})}
    if train and batch_stats:
        out, updates = module.apply(variables, x, train=True, mutable=["batch_stats"])
        return out, updates["batch_stats"]
    return module.apply(variables, x, train=train), batch_stats


def generator_params(state: TrainState) -> Any:
    """The parameters to sample with: the EMA when it is kept, else the live ones."""
    return state.extra.get("ema", state.nets["gen"].params)


def make_gan_step(generator: nn.Module, discriminator: nn.Module, g_tx: optax.GradientTransformation,
                  d_tx: optax.GradientTransformation, *, latent_dim: int, loss: str = "ns",
                  label_smoothing: float = 0.0, n_critic: int = 1, gp_weight: float = 0.0,
                  r1_weight: float = 0.0, clip_value: float | None = None,
                  spectral_norm: bool = False, ema_decay: float | None = None,
                  axis_name: str | None = None) -> StepFn:
    """Build ``step(state, batch) -> (state, metrics)`` for a GAN.

    Args:
      generator, discriminator: Flax modules taking ``(x, train=...)``.
      g_tx, d_tx: their optimizers.
      latent_dim: size of the N(0, I) latent.
      loss: objective name for `genjax.losses.gan.get`.
      label_smoothing: one-sided smoothing of the real labels (BCE objectives).
      n_critic: discriminator updates per generator update; ``batch["image"]`` holds
        ``n_critic`` real batches interleaved: update i takes rows i, i + n_critic, ...
        (each update sees fresh real data, and any contiguous split of the batch over
        devices gives every replica its share of each update's batch).
      gp_weight: lambda of the WGAN-GP gradient penalty (0: off).
      r1_weight: gamma of the R1 penalty, added as gamma / 2 * R1 (0: off).
      clip_value: clip every discriminator weight to [-c, c] after each update (WGAN).
      spectral_norm: normalise the discriminator's kernels with ``state.extra["spectral"]``;
        u advances once per discriminator update, never in the generator update.
      ema_decay: keep ``state.extra["ema"]`` = decay * ema + (1 - decay) * generator params.
      axis_name: data-parallel axis to average gradients and metrics over; noise is
        drawn as on one device and sliced per replica (`genjax.parallel.shard_draw`).
    """
    d_loss_fn, g_loss_fn = gan_losses.get(loss, label_smoothing=label_smoothing)
    if n_critic < 1:
        raise ValueError(f"n_critic must be >= 1, got {n_critic}.")

    def average(tree):
        return jax.lax.pmean(tree, axis_name) if axis_name is not None else tree

    def critic(params, sn):
        return spectral.normalize(params, sn, update=False)[0] if spectral_norm else params

    def d_update(gen: NetState, disc: NetState, sn, real: jax.Array, key: jax.Array):
        z_key, gp_key = jax.random.split(key)
        z = parallel.shard_draw(parallel.normal, z_key, (real.shape[0], latent_dim), axis_name)
        fake, g_stats = apply_net(generator, gen.params, gen.batch_stats, z, train=True)
        fake = jax.lax.stop_gradient(fake)
        if spectral_norm:
            _, sn = spectral.normalize(disc.params, sn, update=True)

        def loss_fn(params):
            p = critic(params, sn)
            real_s, stats = apply_net(discriminator, p, disc.batch_stats, real, train=True)
            fake_s, stats = apply_net(discriminator, p, stats, fake, train=True)
            total = d_loss_fn(real_s, fake_s)
            m = {"disc/loss": total, "disc/real_score": jnp.mean(real_s),
                 "disc/fake_score": jnp.mean(fake_s)}
            score = lambda x: apply_net(discriminator, p, stats, x, train=True)[0]
            if gp_weight:
                m["disc/gradient_penalty"] = penalties.gradient_penalty(
                    score, real, fake, gp_key, axis_name=axis_name)
                total = total + gp_weight * m["disc/gradient_penalty"]
            if r1_weight:
                m["disc/r1"] = penalties.r1_penalty(score, real)
                total = total + 0.5 * r1_weight * m["disc/r1"]
            return total, (stats, m)

        grads, (stats, metrics) = jax.grad(loss_fn, has_aux=True)(disc.params)
        grads, metrics = average((grads, metrics))
        updates, opt_state = d_tx.update(grads, disc.opt_state, disc.params)
        params = optax.apply_updates(disc.params, updates)
        if clip_value is not None:
            params = penalties.clip_weights(params, clip_value)
        disc = NetState(params=params, opt_state=opt_state, batch_stats=stats)
        return gen.replace(batch_stats=g_stats), disc, sn, metrics

    def g_update(gen: NetState, disc: NetState, sn, key, batch_size):
        z = parallel.shard_draw(parallel.normal, key, (batch_size, latent_dim), axis_name)
        d_params = critic(disc.params, sn)

        def loss_fn(params):
            fake, stats = apply_net(generator, params, gen.batch_stats, z, train=True)
            scores, _ = apply_net(discriminator, d_params, disc.batch_stats, fake, train=True)
            g_loss = g_loss_fn(scores)
            return g_loss, (stats, {"gen/loss": g_loss})

        grads, (stats, metrics) = jax.grad(loss_fn, has_aux=True)(gen.params)
        grads, metrics = average((grads, metrics))
        updates, opt_state = g_tx.update(grads, gen.opt_state, gen.params)
        return NetState(optax.apply_updates(gen.params, updates), opt_state, stats), metrics

    def step(state: TrainState, batch: dict) -> tuple[TrainState, Metrics]:
        d_key, g_key = jax.random.split(step_key(state))
        images = batch["image"]
        if images.shape[0] % n_critic:
            raise ValueError(f"Batch of {images.shape[0]} is not n_critic={n_critic} batches.")
        reals = images.reshape(-1, n_critic, *images.shape[1:]).swapaxes(0, 1)
        # A static Python loop, not lax.scan: XLA:CPU compiles convolution gradients inside
        # a while loop far worse than straight-line code (measured, textbook DCGAN step:
        # 1.47 s in a one-trip scan, 0.43 s straight), and n_critic is small.
        gen, disc, sn = state.nets["gen"], state.nets["disc"], state.extra["spectral"]
        per_update = []
        for real, k in zip(reals, jax.random.split(d_key, n_critic)):
            gen, disc, sn, m = d_update(gen, disc, sn, real, k)
            per_update.append(m)
        d_metrics = jax.tree.map(lambda *ms: jnp.mean(jnp.stack(ms)), *per_update)
        gen, g_metrics = g_update(gen, disc, sn, g_key, reals.shape[1])
        extra = {**state.extra, "spectral": sn}
        if ema_decay is not None:
            extra["ema"] = jax.tree.map(lambda e, p: ema_decay * e + (1.0 - ema_decay) * p,
                                        state.extra["ema"], gen.params)
        metrics = {**d_metrics, **g_metrics}
        new = state.replace(step=state.step + 1, nets={"gen": gen, "disc": disc}, extra=extra)
        return new, metrics

    return step
