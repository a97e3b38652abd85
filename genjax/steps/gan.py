"""The GAN train step, composed of pieces a researcher can import one at a time.

A step is ``n_critic`` discriminator updates, then one generator update. Its pieces are
pure functions:

  * `deinterleave`: the step's real batch -> the ``n_critic`` batches of its updates;
  * `pack_samples`: PacGAN's packing, m samples -> one discriminator input;
  * `draw_fakes`: latents (and labels) -> generated images, noise sliced per replica;
  * `critic_loss`: the discriminator's objective with its penalties (WGAN-GP, R1),
    given any ``critic(images, labels, batch_stats) -> (scores, batch_stats)``;
  * `generator_loss`: the generator's objective against a critic;
  * `unrolled_critic`: the unrolled GAN's look-ahead, the critic after k more updates
    as a differentiable function of the generated batch;
  * `critic_update` and `generator_update`: one optimizer update of each network;
  * `shared_update`: both, through one generator forward, the generator against the
    updated critic (``update="shared"``);
  * `simultaneous_update`: both from one forward of each network, each gradient at the
    networks' current parameters (``update="simultaneous"``).

`make_gan_step` binds networks, optimizers and options (a `GANSpec`) to them. One
factory serves every objective (BCE, LSGAN, WGAN, WGAN-GP, hinge, R1, clipping,
spectral norm, EMA) and every stabiliser that lives in the step (unrolling,
conditioning, progressive growing); the options are static, so each configuration
compiles to a single fused step. The state holds ``nets["gen"]``, ``nets["disc"]`` and, in
``extra``, ``"spectral"`` (power-iteration vectors, possibly empty), when EMA is on,
``"ema"`` (the generator's averaged parameters) and, when growing progressively,
``"growth"`` (stage and fade-in coefficient).

Randomness: each key is split, never both drawn from and derived from: the step key
gives one key per critic update and one for the generator update; a critic update's key
gives the fakes' key and the penalty's key; a fakes key gives the latents' and the
labels' keys; the generator update's key gives the fakes' key and the unrolling's key.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from genjax import precision, replica, spectral
from genjax.losses import gan as gan_losses
from genjax.losses import penalties
from genjax.state import NetState, TrainState, step_key
from genjax.steps.common import Metrics, StepFn, check_images, ema_update

# (images [B, ...], labels [B] or None, batch_stats) -> (scores [B] or [B, 1], batch_stats)
Critic = Callable[[jax.Array, Any, Any], tuple[jax.Array, Any]]

# How a step updates the two networks (`make_gan_step`'s ``update``).
UPDATES = ("alternating", "shared", "simultaneous")


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


def generator_inputs(z: jax.Array, labels: jax.Array | None = None,
                     growth: dict | None = None) -> tuple:
    """What a generator takes, in order: the latents, the labels of a conditional GAN,
    and the growth stage and fade-in of a progressive one. A discriminator takes the same
    extras after its images."""
    return (z, *(() if labels is None else (labels,)), *(() if growth is None else (growth,)))


def generator_params(state: TrainState) -> Any:
    """The parameters to sample with: the EMA when it is kept, else the live ones."""
    return state.extra.get("ema", state.nets["gen"].params)


def generate(generator: nn.Module, state: TrainState, z: jax.Array,
             labels: jax.Array | None = None) -> jax.Array:
    """Samples of ``state``'s generator for latents ``z`` (and labels), in evaluation mode."""
    out, _ = apply_net(generator, generator_params(state), state.nets["gen"].batch_stats,
                       *generator_inputs(z, labels, state.extra.get("growth")), train=False)
    return out


def pack_samples(x: jax.Array, m: int) -> jax.Array:
    """PacGAN's packing (Lin et al. 2018): consecutive groups of ``m`` samples of ``x``
    [B, ..., C] become one input [B / m, ..., m * C], their features side by side on the
    last axis (channels of images, coordinates of points), so the critic judges ``m``
    samples jointly and can see a batch that lacks variety. ``m = 1`` is ``x``."""
    if m == 1:
        return x
    if x.shape[0] % m:
        raise ValueError(f"PacGAN packs {m} samples per critic input, but a batch of "
                         f"{x.shape[0]} (per replica) does not divide by {m}.")
    packs = x.reshape(x.shape[0] // m, m, *x.shape[1:])
    return jnp.moveaxis(packs, 1, -2).reshape(x.shape[0] // m, *x.shape[1:-1], m * x.shape[-1])


def deinterleave(x: jax.Array, n_critic: int) -> jax.Array:
    """[n_critic * B, ...] -> [n_critic, B, ...]: update i takes rows i, i + n_critic, ...

    Each update sees fresh real data, and any contiguous split of the batch over devices
    and hosts gives every replica its share of each update's batch.
    """
    if x.shape[0] % n_critic:
        raise ValueError(f"Batch of {x.shape[0]} is not n_critic={n_critic} batches.")
    return x.reshape(-1, n_critic, *x.shape[1:]).swapaxes(0, 1)


def critic_loss(critic: Critic, batch_stats: Any, real: jax.Array, fake: jax.Array,
                key: jax.Array, *, d_loss: gan_losses.DiscLoss, real_labels: Any = None,
                fake_labels: Any = None, gp_weight: float = 0.0, r1_weight: float = 0.0,
                axis_name: str | None = None, joint: bool = False
                ) -> tuple[jax.Array, tuple[Any, Metrics]]:
    """The discriminator's objective: ``d_loss(D(real), D(fake))`` + ``gp_weight`` * GP
    (on interpolates drawn with ``key``) + ``r1_weight`` / 2 * R1 (on ``real``).

    ``critic`` scores a batch (BatchNorm statistics threaded through real, then fake);
    the penalties score with the statistics after both. ``joint`` scores real and fake
    in one call on their concatenation (one larger GEMM per layer instead of two): the
    same scores when every example is scored on its own, so a critic with BatchNorm
    (statistics per call) is refused; one with minibatch features must not use it.
    Returns (loss, (batch_stats, metrics)) for ``jax.grad(..., has_aux=True)``. Labels
    (None: unconditional): the penalties score with ``real_labels``; an interpolate of
    the gradient penalty mixes a real image and a fake, so the fakes must have been
    drawn with the real labels (`critic_update` does so) for the labels to be right.
    """
    total, (stats, metrics, _) = _scored_critic_loss(
        critic, batch_stats, real, fake, key, d_loss=d_loss, real_labels=real_labels,
        fake_labels=fake_labels, gp_weight=gp_weight, r1_weight=r1_weight,
        axis_name=axis_name, joint=joint)
    return total, (stats, metrics)


def score_real_and_fake(critic: Critic, batch_stats: Any, real: jax.Array, fake: jax.Array,
                        real_labels: Any = None, fake_labels: Any = None, joint: bool = False
                        ) -> tuple[jax.Array, jax.Array, Any]:
    """The critic's scores of ``real`` and of ``fake`` and its BatchNorm statistics after
    both: two calls (real, then fake), or with ``joint`` one call on their concatenation,
    refused for a critic with BatchNorm (see `critic_loss`)."""
    if not joint:
        real_s, stats = critic(real, real_labels, batch_stats)
        fake_s, stats = critic(fake, fake_labels, stats)
        return real_s, fake_s, stats
    if jax.tree.leaves(batch_stats):
        raise ValueError("A joint critic call scores real and fake together, which "
                         "BatchNorm would mix; this discriminator has BatchNorm "
                         "(use an update other than 'shared').")
    labels = None if real_labels is None else jnp.concatenate([real_labels, fake_labels])
    scores, stats = critic(jnp.concatenate([real, fake]), labels, batch_stats)
    return scores[:real.shape[0]], scores[real.shape[0]:], stats


def _scored_critic_loss(critic: Critic, batch_stats: Any, real: jax.Array, fake: jax.Array,
                        key: jax.Array, *, d_loss: gan_losses.DiscLoss, real_labels: Any,
                        fake_labels: Any, gp_weight: float, r1_weight: float,
                        axis_name: str | None, joint: bool
                        ) -> tuple[jax.Array, tuple[Any, Metrics, jax.Array]]:
    """`critic_loss`, with the fakes' scores in its auxiliary output (for the
    simultaneous update's generator loss, which reads the same scores)."""
    real_s, fake_s, stats = score_real_and_fake(critic, batch_stats, real, fake, real_labels,
                                                fake_labels, joint)
    total = d_loss(real_s, fake_s)
    metrics = {"disc/loss": total, "disc/real_score": jnp.mean(real_s),
               "disc/fake_score": jnp.mean(fake_s)}
    score = lambda x: critic(x, real_labels, stats)[0]
    if gp_weight:
        metrics["disc/gradient_penalty"] = penalties.gradient_penalty(
            score, real, fake, key, axis_name=axis_name)
        total = total + gp_weight * metrics["disc/gradient_penalty"]
    if r1_weight:
        metrics["disc/r1"] = penalties.r1_penalty(score, real)
        total = total + 0.5 * r1_weight * metrics["disc/r1"]
    return total, (stats, metrics, fake_s)


def generator_loss(critic: Critic, batch_stats: Any, fake: jax.Array, labels: Any = None, *,
                   g_loss: gan_losses.GenLoss) -> tuple[jax.Array, Metrics]:
    """The generator's objective ``g_loss(D(fake))`` and its metric."""
    scores, _ = critic(fake, labels, batch_stats)
    loss = g_loss(scores)
    return loss, {"gen/loss": loss}


def unrolled_critic(grad: Callable[[Any, int, jax.Array], Any],
                    update: Callable[[Any, Any, Any], tuple[Any, Any]], params: Any,
                    opt_state: Any, key: jax.Array, steps: int) -> Any:
    """The critic's parameters after ``steps`` more updates (Metz et al. 2017).

    ``grad(params, i, key)`` is the critic's gradient at look-ahead update i (the caller
    decides which real batch and which fakes it sees; to differentiate the generator
    through the look-ahead, it closes over the generated batch), ``update(grads,
    opt_state, params) -> (params, opt_state)`` the optimizer update.
    """
    for i, k in enumerate(jax.random.split(key, steps)):
        params, opt_state = update(grad(params, i, k), opt_state, params)
    return params


@dataclasses.dataclass(frozen=True)
class GANSpec:
    """The static parts of a GAN step: networks, optimizers and options (see `make_gan_step`)."""

    generator: nn.Module
    discriminator: nn.Module
    g_tx: optax.GradientTransformation
    d_tx: optax.GradientTransformation
    latent_dim: int
    d_loss: gan_losses.DiscLoss
    g_loss: gan_losses.GenLoss
    n_critic: int = 1
    gp_weight: float = 0.0
    r1_weight: float = 0.0
    clip_value: float | None = None
    spectral_norm: bool = False
    ema_decay: float | None = None
    num_classes: int = 0
    unroll_steps: int = 0
    growth: Callable[[jax.Array], dict] | None = None
    compute_dtype: str = "float32"
    axis_name: str | None = None
    update: str = "alternating"
    pack: int = 1

    @property
    def joint_critic(self) -> bool:
        """Whether the critic scores real and fake in one call: the shared update's."""
        return self.update == "shared"

    def critic(self, params: Any, sn: Any, grow: dict | None) -> Critic:
        """The discriminator as a `Critic`: spectrally normalised with ``sn`` (not advanced)
        when asked, at growth stage ``grow``, scoring packs of ``pack`` samples."""
        if self.spectral_norm:
            params = spectral.normalize(params, sn, update=False)[0]
        grown = () if grow is None else (grow,)
        return lambda x, labels, stats: apply_net(
            self.discriminator, params, stats, pack_samples(x, self.pack), labels, *grown,
            train=True, compute_dtype=self.compute_dtype)


def draw_fakes(spec: GANSpec, params: Any, gen: NetState, key: jax.Array, n: int,
               labels: jax.Array | None, grow: dict | None
               ) -> tuple[jax.Array, jax.Array | None, Any]:
    """``n`` generated images in training mode (this replica's rows of the one-device draw):
    (images, their labels, the generator's updated BatchNorm statistics).

    A conditional GAN uses ``labels`` when given, else labels drawn uniformly.
    """
    z_key, y_key = jax.random.split(key)
    z = replica.shard_draw(replica.normal, z_key, (n, spec.latent_dim), spec.axis_name)
    if spec.num_classes and labels is None:
        uniform = lambda k, shape: jax.random.randint(k, shape, 0, spec.num_classes)
        labels = replica.shard_draw(uniform, y_key, (n,), spec.axis_name)
    fake, stats = apply_net(spec.generator, params, gen.batch_stats,
                            *generator_inputs(z, labels, grow), train=True,
                            compute_dtype=spec.compute_dtype)
    return fake, labels, stats


def _critic_objective(spec: GANSpec, params: Any, sn: Any, batch_stats: Any, real: jax.Array,
                      real_y: Any, fake: jax.Array, fake_y: Any, grow: dict | None,
                      key: jax.Array) -> tuple[jax.Array, tuple[Any, Metrics]]:
    """`critic_loss` of the discriminator with ``params`` under ``spec``'s options."""
    return critic_loss(spec.critic(params, sn, grow), batch_stats, real, fake, key,
                       d_loss=spec.d_loss, real_labels=real_y, fake_labels=fake_y,
                       gp_weight=spec.gp_weight, r1_weight=spec.r1_weight,
                       axis_name=spec.axis_name, joint=spec.joint_critic)


def _optimizer_update(spec: GANSpec, grads: Any, opt_state: Any, params: Any
                      ) -> tuple[Any, Any]:
    """One discriminator optimizer update (gradients averaged over replicas), then clipping."""
    updates, opt_state = spec.d_tx.update(replica.average(grads, spec.axis_name), opt_state,
                                          params)
    params = optax.apply_updates(params, updates)
    if spec.clip_value is not None:
        params = penalties.clip_weights(params, spec.clip_value)
    return params, opt_state


def _critic_step(spec: GANSpec, disc: NetState, sn: Any, real: jax.Array, real_y: Any,
                 fake: jax.Array, fake_y: Any, grow: dict | None, key: jax.Array
                 ) -> tuple[NetState, Any, Metrics]:
    """One discriminator optimizer update on ``real`` against the given (detached) fakes;
    advances the spectral-norm vectors once. Returns (disc, sn, metrics)."""
    if spec.spectral_norm:
        _, sn = spectral.normalize(disc.params, sn, update=True)
    grads, (stats, metrics) = jax.grad(_critic_objective, argnums=1, has_aux=True)(
        spec, disc.params, sn, disc.batch_stats, real, real_y, fake, fake_y, grow, key)
    params, opt_state = _optimizer_update(spec, grads, disc.opt_state, disc.params)
    disc = NetState(params=params, opt_state=opt_state, batch_stats=stats)
    return disc, sn, replica.average(metrics, spec.axis_name)


def critic_update(spec: GANSpec, gen: NetState, disc: NetState, sn: Any, real: jax.Array,
                  real_y: jax.Array | None, key: jax.Array, grow: dict | None
                  ) -> tuple[NetState, NetState, Any, Metrics]:
    """One discriminator update on ``real`` against fresh fakes; advances the spectral-norm
    vectors once. Returns (gen with updated BatchNorm statistics, disc, sn, metrics).

    A conditional GAN with a gradient penalty draws the fakes with the real labels, so each
    interpolate lies between a real image and a fake of the same class and is scored with
    that class; otherwise fake labels are drawn uniformly.
    """
    fake_key, gp_key = jax.random.split(key)
    same_labels = real_y if spec.gp_weight else None
    fake, fake_y, g_stats = draw_fakes(spec, gen.params, gen, fake_key, real.shape[0],
                                       same_labels, grow)
    disc, sn, metrics = _critic_step(spec, disc, sn, real, real_y, jax.lax.stop_gradient(fake),
                                     fake_y, grow, gp_key)
    return gen.replace(batch_stats=g_stats), disc, sn, metrics


def _generator_optimizer_update(spec: GANSpec, gen: NetState, grads: Any, stats: Any,
                                metrics: Metrics) -> tuple[NetState, Metrics]:
    """One generator optimizer update (gradients and metrics averaged over replicas)."""
    grads, metrics = replica.average((grads, metrics), spec.axis_name)
    updates, opt_state = spec.g_tx.update(grads, gen.opt_state, gen.params)
    return NetState(optax.apply_updates(gen.params, updates), opt_state, stats), metrics


def shared_update(spec: GANSpec, gen: NetState, disc: NetState, sn: Any, real: jax.Array,
                  real_y: jax.Array | None, key: jax.Array, grow: dict | None
                  ) -> tuple[NetState, NetState, Any, Metrics]:
    """A critic update and a generator update through one generator forward (PyTorch's
    DCGAN idiom: ``fake = G(z)``; D learns on ``fake.detach()``; G learns through the same
    ``fake`` against the updated D).

    The forward is kept as a `jax.vjp`; the generator's gradient is its pullback of
    ``d g_loss(D'(fake)) / d fake``, where D' is the critic after this step's update (the
    one `generator_update` also sees). The generator's BatchNorm statistics advance once
    per step, and the fakes' labels (conditional GANs) are the critic update's.
    Returns (gen, disc, sn, metrics), as `critic_update` then `generator_update` do.
    """
    fake_key, gp_key = jax.random.split(key)
    same_labels = real_y if spec.gp_weight else None

    def forward(params):
        fake, fake_y, stats = draw_fakes(spec, params, gen, fake_key, real.shape[0],
                                         same_labels, grow)
        return fake, (fake_y, stats)

    fake, pullback, (fake_y, g_stats) = jax.vjp(forward, gen.params, has_aux=True)
    disc, sn, metrics = _critic_step(spec, disc, sn, real, real_y, jax.lax.stop_gradient(fake),
                                     fake_y, grow, gp_key)
    critic = spec.critic(disc.params, sn, grow)
    loss = lambda f: generator_loss(critic, disc.batch_stats, f, fake_y, g_loss=spec.g_loss)
    (_, g_metrics), cotangent = jax.value_and_grad(loss, has_aux=True)(fake)
    (grads,) = pullback(cotangent)
    gen, g_metrics = _generator_optimizer_update(spec, gen, grads, g_stats, g_metrics)
    return gen, disc, sn, {**metrics, **g_metrics}


def simultaneous_update(spec: GANSpec, gen: NetState, disc: NetState, sn: Any,
                        real: jax.Array, real_y: jax.Array | None, key: jax.Array,
                        grow: dict | None) -> tuple[NetState, NetState, Any, Metrics]:
    """Both networks updated from one forward of each (the TensorFlow DCGAN tutorial's
    step): ``fake = G(z)``; the critic scores ``real`` and ``fake`` once; the critic's
    loss and the generator's loss are both taken from those scores, each differentiated
    with respect to its own network at its current parameters, and both optimizers
    apply them. Unlike `shared_update`, the generator learns against the critic before
    this step's update.

    The scores are kept as one `jax.vjp` of ``(critic params, fakes) -> (critic loss,
    generator loss)``, pulled back once per loss; the generator's gradient is the
    generator forward's pullback of the second. Keys, labels and the spectral-norm
    advance are the critic update's. Returns (gen, disc, sn, metrics).
    """
    fake_key, gp_key = jax.random.split(key)
    same_labels = real_y if spec.gp_weight else None
    if spec.spectral_norm:
        _, sn = spectral.normalize(disc.params, sn, update=True)

    def forward(params):
        fake, fake_y, stats = draw_fakes(spec, params, gen, fake_key, real.shape[0],
                                         same_labels, grow)
        return fake, (fake_y, stats)

    fake, g_pullback, (fake_y, g_stats) = jax.vjp(forward, gen.params, has_aux=True)

    def losses(d_params, fake):
        d_total, (stats, metrics, fake_s) = _scored_critic_loss(
            spec.critic(d_params, sn, grow), disc.batch_stats, real, fake, gp_key,
            d_loss=spec.d_loss, real_labels=real_y, fake_labels=fake_y,
            gp_weight=spec.gp_weight, r1_weight=spec.r1_weight, axis_name=spec.axis_name,
            joint=False)
        return (d_total, spec.g_loss(fake_s)), (stats, metrics)

    (d_total, g_total), pullback, (d_stats, metrics) = jax.vjp(losses, disc.params, fake,
                                                               has_aux=True)
    one, zero = jnp.ones_like(d_total), jnp.zeros_like(d_total)
    d_grads, _ = pullback((one, zero))
    _, fake_cotangent = pullback((zero, one))
    (g_grads,) = g_pullback(fake_cotangent)
    params, opt_state = _optimizer_update(spec, d_grads, disc.opt_state, disc.params)
    disc = NetState(params=params, opt_state=opt_state, batch_stats=d_stats)
    gen, g_metrics = _generator_optimizer_update(spec, gen, g_grads, g_stats,
                                                 {"gen/loss": g_total})
    return gen, disc, sn, {**replica.average(metrics, spec.axis_name), **g_metrics}


def generator_update(spec: GANSpec, gen: NetState, disc: NetState, sn: Any, key: jax.Array,
                     reals: jax.Array, real_ys: jax.Array | None, grow: dict | None
                     ) -> tuple[NetState, Metrics]:
    """One generator update against the discriminator (or, unrolled, its look-ahead).

    The look-ahead (`unrolled_critic`) sees the generator's own fakes at every update and
    cycles through this step's real batches ``reals`` [n_critic, B, ...], as in Metz et
    al.'s code, so unrolling costs k discriminator gradients, not k generator passes.
    """
    fake_key, unroll_key = jax.random.split(key)
    objective = jax.grad(_critic_objective, argnums=1, has_aux=True)

    def loss(params):
        fake, fake_y, stats = draw_fakes(spec, params, gen, fake_key, reals.shape[1], None, grow)
        d_params = disc.params
        if spec.unroll_steps:
            batch = lambda i: (reals[i % spec.n_critic],
                               None if real_ys is None else real_ys[i % spec.n_critic])
            grad = lambda p, i, k: objective(spec, p, sn, disc.batch_stats, *batch(i), fake,
                                             fake_y, grow, k)[0]
            d_params = unrolled_critic(grad, functools.partial(_optimizer_update, spec),
                                       disc.params, disc.opt_state, unroll_key, spec.unroll_steps)
        g_loss, metrics = generator_loss(spec.critic(d_params, sn, grow), disc.batch_stats, fake,
                                         fake_y, g_loss=spec.g_loss)
        return g_loss, (stats, metrics)

    grads, (stats, metrics) = jax.grad(loss, has_aux=True)(gen.params)
    return _generator_optimizer_update(spec, gen, grads, stats, metrics)


def gan_step(spec: GANSpec, state: TrainState, batch: dict) -> tuple[TrainState, Metrics]:
    """``n_critic`` `critic_update` calls on the deinterleaved real batches, one
    `generator_update`, then the EMA and growth state; metrics averaged over the critic
    updates."""
    check_images(batch)
    d_key, g_key = jax.random.split(step_key(state))
    reals = deinterleave(batch["image"], spec.n_critic)
    real_ys = deinterleave(batch["label"], spec.n_critic) if spec.num_classes else None
    grow = state.extra.get("growth")
    gen, disc, sn = state.nets["gen"], state.nets["disc"], state.extra["spectral"]
    # A static Python loop, not lax.scan: XLA:CPU compiles convolution gradients inside
    # a while loop far worse than straight-line code (measured, textbook DCGAN step:
    # 1.47 s in a one-trip scan, 0.43 s straight), and n_critic is small.
    keys = jax.random.split(d_key, spec.n_critic)
    if spec.update != "alternating":  # n_critic == 1: the critic update's key and fakes
        one_pass = shared_update if spec.update == "shared" else simultaneous_update
        gen, disc, sn, metrics = one_pass(spec, gen, disc, sn, reals[0],
                                          None if real_ys is None else real_ys[0], keys[0], grow)
    else:
        per_update = []
        for i, k in enumerate(keys):
            gen, disc, sn, m = critic_update(spec, gen, disc, sn, reals[i],
                                             None if real_ys is None else real_ys[i], k, grow)
            per_update.append(m)
        metrics = jax.tree.map(lambda *ms: jnp.mean(jnp.stack(ms)), *per_update)
        gen, g_metrics = generator_update(spec, gen, disc, sn, g_key, reals, real_ys, grow)
        metrics.update(g_metrics)
    extra = {**state.extra, "spectral": sn}
    if spec.ema_decay is not None:
        extra["ema"] = ema_update(state.extra["ema"], gen.params, spec.ema_decay)
    if spec.growth is not None:
        extra["growth"] = spec.growth(state.step + 1)
        metrics.update({"growth/stage": grow["stage"].astype(jnp.float32),
                        "growth/alpha": grow["alpha"]})
    new = state.replace(step=state.step + 1, nets={"gen": gen, "disc": disc}, extra=extra)
    return new, metrics


def make_gan_step(generator: nn.Module, discriminator: nn.Module, g_tx: optax.GradientTransformation,
                  d_tx: optax.GradientTransformation, *, latent_dim: int, loss: str = "ns",
                  label_smoothing: float = 0.0, n_critic: int = 1, gp_weight: float = 0.0,
                  r1_weight: float = 0.0, clip_value: float | None = None,
                  spectral_norm: bool = False, ema_decay: float | None = None,
                  num_classes: int = 0, unroll_steps: int = 0,
                  growth: Callable[[jax.Array], dict] | None = None,
                  compute_dtype: str = "float32", axis_name: str | None = None,
                  update: str = "alternating", pack: int = 1) -> StepFn:
    """Build ``step(state, batch) -> (state, metrics)`` for a GAN (`gan_step` of a `GANSpec`).

    Args:
      generator, discriminator: Flax modules taking ``(x, train=...)``; a conditional
        generator takes ``(z, labels)``, a conditional discriminator ``(x, labels)``, and
        progressive networks take the growth state last.
      g_tx, d_tx: their optimizers.
      latent_dim: size of the N(0, I) latent.
      loss: objective name for `genjax.losses.gan.get`.
      label_smoothing: one-sided smoothing of the real labels (BCE objectives).
      n_critic: discriminator updates per generator update; ``batch["image"]`` holds
        ``n_critic`` real batches interleaved (`deinterleave`).
      gp_weight: lambda of the WGAN-GP gradient penalty (0: off).
      r1_weight: gamma of the R1 penalty, added as gamma / 2 * R1 (0: off).
      clip_value: clip every discriminator weight to [-c, c] after each update (WGAN).
      spectral_norm: normalise the discriminator's kernels with ``state.extra["spectral"]``;
        u advances once per discriminator update, never in the generator update.
      ema_decay: keep ``state.extra["ema"]`` = decay * ema + (1 - decay) * generator params.
      num_classes: > 0 for a class-conditional GAN: real examples keep their
        ``batch["label"]``; generated ones get labels drawn uniformly (in the critic
        updates of a penalised critic, the real labels: see `critic_update`).
      unroll_steps: unrolled GAN (Metz et al. 2017): the generator's loss is taken
        against the discriminator after this many further optimizer steps
        (`unrolled_critic`), differentiated through them; 0 is the plain GAN.
      growth: progressive growing: step -> ``{"stage", "alpha"}``; the state's
        ``extra["growth"]`` is what the networks use, and is advanced to
        ``growth(step + 1)`` after every step.
      compute_dtype: the networks' arithmetic, ``float32`` or ``bfloat16``
        (`genjax.precision`: parameters, optimizer states, losses and penalties stay float32).
      axis_name: data-parallel axis to average gradients and metrics over; noise is
        drawn as on one device and sliced per replica (`genjax.replica.shard_draw`).
      update: how the two networks are updated (`UPDATES`):
        ``"alternating"``, the textbook step: ``n_critic`` critic updates, then a
        generator update through fakes of its own against the updated critic;
        ``"shared"`` (`shared_update`), one generator forward per step: the generator
        learns through the critic update's fakes, against the updated critic, and the
        critic scores real and fake in one call (critics without BatchNorm or
        minibatch features); ``"simultaneous"`` (`simultaneous_update`), the
        TensorFlow DCGAN tutorial's step: one forward of each network, both gradients
        from those scores at the current parameters. The last two need ``n_critic=1``
        and no unrolling.
      pack: PacGAN (`pack_samples`): the critic scores packs of this many real or this
        many generated samples; the discriminator must take inputs of ``pack`` times the
        channels. Not with class labels or the per-sample penalties (WGAN-GP, R1).
    """
    d_loss, g_loss = gan_losses.get(loss, label_smoothing=label_smoothing)
    precision.compute_dtype(compute_dtype)  # validate before tracing
    if n_critic < 1:
        raise ValueError(f"n_critic must be >= 1, got {n_critic}.")
    if unroll_steps < 0:
        raise ValueError(f"unroll_steps must be >= 0, got {unroll_steps}.")
    _check_update(update, n_critic, unroll_steps)
    _check_pack(pack, num_classes, gp_weight, r1_weight)
    spec = GANSpec(generator, discriminator, g_tx, d_tx, latent_dim, d_loss, g_loss, n_critic,
                   gp_weight, r1_weight, clip_value, spectral_norm, ema_decay, num_classes,
                   unroll_steps, growth, compute_dtype, axis_name, update, pack)

    def step(state: TrainState, batch: dict) -> tuple[TrainState, Metrics]:
        return gan_step(spec, state, batch)

    return step


def _check_update(update: str, n_critic: int, unroll_steps: int) -> None:
    """Refuse an unknown update, and a one-pass update with several critic updates or
    unrolling (one generator forward serves exactly one critic update)."""
    if update not in UPDATES:
        raise ValueError(f"Unknown gan_update {update!r}; valid: {', '.join(UPDATES)}.")
    if update != "alternating" and (n_critic != 1 or unroll_steps):
        raise ValueError(f"gan_update={update!r} updates both networks from one generator "
                         f"forward: it needs n_critic=1 and unroll_steps=0, got "
                         f"n_critic={n_critic}, unroll_steps={unroll_steps}.")


def _check_pack(pack: int, num_classes: int, gp_weight: float, r1_weight: float) -> None:
    """Refuse packing where its meaning is not settled here: class labels (one per sample,
    not per pack) and penalties defined per sample (WGAN-GP, R1)."""
    if pack < 1:
        raise ValueError(f"pack must be >= 1, got {pack}.")
    if pack > 1 and (num_classes or gp_weight or r1_weight):
        raise ValueError(f"pack={pack} (PacGAN) is not defined here for a class-conditional "
                         f"GAN or with the per-sample WGAN-GP / R1 penalties; got "
                         f"num_classes={num_classes}, gp_weight={gp_weight}, "
                         f"r1_weight={r1_weight}.")
