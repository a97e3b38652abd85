"""The GAN train step: ``n_critic`` discriminator updates, then one generator update.

One factory serves every objective (BCE, LSGAN, WGAN, WGAN-GP, hinge, R1, clipping,
spectral norm, EMA) and every stabiliser that lives in the step (unrolling,
conditioning, progressive growing); the options are static, so each configuration
compiles to a single fused step. The state holds ``nets["gen"]``, ``nets["disc"]`` and, in
``extra``, ``"spectral"`` (power-iteration vectors, possibly empty), when EMA is
on, ``"ema"`` (the generator's averaged parameters) and, when growing progressively,
``"growth"`` (stage and fade-in coefficient).
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from genjax import parallel, precision, spectral
from genjax.losses import gan as gan_losses
from genjax.losses import penalties
from genjax.state import NetState, TrainState, step_key
from genjax.steps.common import Metrics, StepFn


def apply_net(module: nn.Module, params: Any, batch_stats: Any, *inputs: Any, train: bool,
              compute_dtype: str = "float32") -> tuple[jax.Array, Any]:
    """Run a generator or discriminator on ``inputs``; returns (outputs, updated batch_stats).

    Batch statistics are updated only when ``train`` and the network has BatchNorm. The
    network computes in ``compute_dtype`` and returns float32 (`genjax.precision`).
    """
    apply = precision.in_compute_dtype(module.apply, compute_dtype)
    variables = {"params": params, **({"batch_stats": batch_stats} if batch_stats else {})}
    if train and batch_stats:
        out, updates = apply(variables, *inputs, train=True, mutable=["batch_stats"])
        return out, updates["batch_stats"]
    return apply(variables, *inputs, train=train), batch_stats


def generator_params(state: TrainState) -> Any:
    """The parameters to sample with: the EMA when it is kept, else the live ones."""
    return state.extra.get("ema", state.nets["gen"].params)


def generator_inputs(state: TrainState, z: jax.Array, labels: jax.Array | None) -> tuple:
    """What the generator of ``state`` takes: the latents, the labels of a conditional
    GAN, and the growth stage and fade-in of a progressive one (``state.extra["growth"]``)."""
    growth = state.extra.get("growth")
    return (z, *(() if labels is None else (labels,)), *(() if growth is None else (growth,)))


def generate(generator: nn.Module, state: TrainState, z: jax.Array,
             labels: jax.Array | None = None) -> jax.Array:
    """Samples of ``state``'s generator for latents ``z`` (and labels), in evaluation mode."""
    out, _ = apply_net(generator, generator_params(state), state.nets["gen"].batch_stats,
                       *generator_inputs(state, z, labels), train=False)
    return out


def make_gan_step(generator: nn.Module, discriminator: nn.Module, g_tx: optax.GradientTransformation,
                  d_tx: optax.GradientTransformation, *, latent_dim: int, loss: str = "ns",
                  label_smoothing: float = 0.0, n_critic: int = 1, gp_weight: float = 0.0,
                  r1_weight: float = 0.0, clip_value: float | None = None,
                  spectral_norm: bool = False, ema_decay: float | None = None,
                  num_classes: int = 0, unroll_steps: int = 0,
                  growth: Callable[[jax.Array], dict] | None = None,
                  compute_dtype: str = "float32", axis_name: str | None = None) -> StepFn:
    """Build ``step(state, batch) -> (state, metrics)`` for a GAN.

    Args:
      generator, discriminator: Flax modules taking ``(x, train=...)``; a conditional
        generator takes ``(z, labels)``, a conditional discriminator ``(x, labels)``, and
        progressive networks take the growth state last.
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
      num_classes: > 0 for a class-conditional GAN: real examples keep their
        ``batch["label"]``, generated ones get labels drawn uniformly.
      unroll_steps: unrolled GAN (Metz et al. 2017): the generator's loss is taken
        against the discriminator after this many further optimizer steps (on this
        step's real batches and the generator's samples that the loss scores),
        differentiated through those steps. The
        discriminator's own update is unchanged; 0 is the plain GAN.
      growth: progressive growing: step -> ``{"stage", "alpha"}``; the state's
        ``extra["growth"]`` is what the networks use, and is advanced to
        ``growth(step + 1)`` after every step.
      compute_dtype: the networks' arithmetic, ``float32`` or ``bfloat16``
        (`genjax.precision`: parameters, optimizer states, losses and penalties stay float32).
      axis_name: data-parallel axis to average gradients and metrics over; noise is
        drawn as on one device and sliced per replica (`genjax.parallel.shard_draw`).
    """
    d_loss_fn, g_loss_fn = gan_losses.get(loss, label_smoothing=label_smoothing)
    precision.compute_dtype(compute_dtype)  # validate before tracing
    run = functools.partial(apply_net, compute_dtype=compute_dtype)
    if n_critic < 1:
        raise ValueError(f"n_critic must be >= 1, got {n_critic}.")
    if unroll_steps < 0:
        raise ValueError(f"unroll_steps must be >= 0, got {unroll_steps}.")

    def average(tree):
        return jax.lax.pmean(tree, axis_name) if axis_name is not None else tree

    def critic(params, sn):
        return spectral.normalize(params, sn, update=False)[0] if spectral_norm else params

    def draw(key, n):
        """Latents and, for a conditional GAN, uniformly drawn labels of n fakes."""
        z = parallel.shard_draw(parallel.normal, key, (n, latent_dim), axis_name)
        if not num_classes:
            return z, None
        labels = lambda k, shape: jax.random.randint(k, shape, 0, num_classes)
        return z, parallel.shard_draw(labels, jax.random.fold_in(key, 1), (n,), axis_name)

    def fake_batch(params, gen: NetState, key, n, grow):
        z, labels = draw(key, n)
        inputs = (z, *(() if labels is None else (labels,)), *(() if grow is None else (grow,)))
        fake, stats = run(generator, params, gen.batch_stats, *inputs, train=True)
        return fake, labels, stats

    def disc_inputs(x, labels, grow):
        return (x, labels, *(() if grow is None else (grow,)))

    def d_objective(params, sn, stats, real, real_y, fake, fake_y, grow, gp_key):
        """The discriminator's loss (with penalties), its BatchNorm stats and metrics."""
        p = critic(params, sn)
        real_s, stats = run(discriminator, p, stats, *disc_inputs(real, real_y, grow), train=True)
        fake_s, stats = run(discriminator, p, stats, *disc_inputs(fake, fake_y, grow), train=True)
        total = d_loss_fn(real_s, fake_s)
        m = {"disc/loss": total, "disc/real_score": jnp.mean(real_s),
             "disc/fake_score": jnp.mean(fake_s)}
        score = lambda x: run(discriminator, p, stats, *disc_inputs(x, real_y, grow),
                              train=True)[0]
        if gp_weight:
            m["disc/gradient_penalty"] = penalties.gradient_penalty(
                score, real, fake, gp_key, axis_name=axis_name)
            total = total + gp_weight * m["disc/gradient_penalty"]
        if r1_weight:
            m["disc/r1"] = penalties.r1_penalty(score, real)
            total = total + 0.5 * r1_weight * m["disc/r1"]
        return total, (stats, m)

    def d_apply(grads, opt_state, params):
        updates, opt_state = d_tx.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        if clip_value is not None:
            params = penalties.clip_weights(params, clip_value)
        return params, opt_state

    def d_update(gen: NetState, disc: NetState, sn, real, real_y, key, grow):
        fake_key, gp_key = jax.random.split(key)
        fake, fake_y, g_stats = fake_batch(gen.params, gen, fake_key, real.shape[0], grow)
        fake = jax.lax.stop_gradient(fake)
        if spectral_norm:
            _, sn = spectral.normalize(disc.params, sn, update=True)
        grads, (stats, metrics) = jax.grad(d_objective, has_aux=True)(
            disc.params, sn, disc.batch_stats, real, real_y, fake, fake_y, grow, gp_key)
        grads, metrics = average((grads, metrics))
        params, opt_state = d_apply(grads, disc.opt_state, disc.params)
        disc = NetState(params=params, opt_state=opt_state, batch_stats=stats)
        return gen.replace(batch_stats=g_stats), disc, sn, metrics

    def unrolled(disc: NetState, sn, reals, real_ys, fake, fake_y, key, grow):
        """The discriminator's parameters after ``unroll_steps`` more updates against the
        generated batch ``fake``, as a differentiable function of it. As in Metz et al.'s
        code, every unrolled update sees the same fakes (and cycles through this step's
        real batches), so unrolling costs k discriminator gradients, not k generator passes."""
        params, opt_state = disc.params, disc.opt_state
        for i, gp_key in enumerate(jax.random.split(key, unroll_steps)):
            real, real_y = reals[i % n_critic], None if real_ys is None else real_ys[i % n_critic]
            grads, _ = jax.grad(d_objective, has_aux=True)(
                params, sn, disc.batch_stats, real, real_y, fake, fake_y, grow, gp_key)
            params, opt_state = d_apply(average(grads), opt_state, params)
        return params

    def g_update(gen: NetState, disc: NetState, sn, key, reals, real_ys, grow):
        fake_key, unroll_key = key, jax.random.fold_in(key, 2)

        def loss_fn(params):
            fake, fake_y, stats = fake_batch(params, gen, fake_key, reals.shape[1], grow)
            d_params = disc.params
            if unroll_steps:
                d_params = unrolled(disc, sn, reals, real_ys, fake, fake_y, unroll_key, grow)
            scores, _ = run(discriminator, critic(d_params, sn), disc.batch_stats,
                            *disc_inputs(fake, fake_y, grow), train=True)
            g_loss = g_loss_fn(scores)
            return g_loss, (stats, {"gen/loss": g_loss})

        grads, (stats, metrics) = jax.grad(loss_fn, has_aux=True)(gen.params)
        grads, metrics = average((grads, metrics))
        updates, opt_state = g_tx.update(grads, gen.opt_state, gen.params)
        return NetState(optax.apply_updates(gen.params, updates), opt_state, stats), metrics

    def interleaved(x):
        """[n_critic * B, ...] -> [n_critic, B, ...]: update i takes rows i, i + n_critic, ..."""
        return x.reshape(-1, n_critic, *x.shape[1:]).swapaxes(0, 1)

    def step(state: TrainState, batch: dict) -> tuple[TrainState, Metrics]:
        d_key, g_key = jax.random.split(step_key(state))
        images = batch["image"]
        if images.shape[0] % n_critic:
            raise ValueError(f"Batch of {images.shape[0]} is not n_critic={n_critic} batches.")
        reals = interleaved(images)
        real_ys = interleaved(batch["label"]) if num_classes else None
        grow = state.extra.get("growth")
        # A static Python loop, not lax.scan: XLA:CPU compiles convolution gradients inside
        # a while loop far worse than straight-line code (measured, textbook DCGAN step:
        # 1.47 s in a one-trip scan, 0.43 s straight), and n_critic is small.
        gen, disc, sn = state.nets["gen"], state.nets["disc"], state.extra["spectral"]
        per_update = []
        for i, k in enumerate(jax.random.split(d_key, n_critic)):
            gen, disc, sn, m = d_update(gen, disc, sn, reals[i],
                                        None if real_ys is None else real_ys[i], k, grow)
            per_update.append(m)
        d_metrics = jax.tree.map(lambda *ms: jnp.mean(jnp.stack(ms)), *per_update)
        gen, g_metrics = g_update(gen, disc, sn, g_key, reals, real_ys, grow)
        extra = {**state.extra, "spectral": sn}
        if ema_decay is not None:
            extra["ema"] = jax.tree.map(lambda e, p: ema_decay * e + (1.0 - ema_decay) * p,
                                        state.extra["ema"], gen.params)
        metrics = {**d_metrics, **g_metrics}
        if growth is not None:
            extra["growth"] = growth(state.step + 1)
            metrics.update({"growth/stage": grow["stage"].astype(jnp.float32),
                            "growth/alpha": grow["alpha"]})
        new = state.replace(step=state.step + 1, nets={"gen": gen, "disc": disc}, extra=extra)
        return new, metrics

    return step
