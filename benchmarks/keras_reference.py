"""Keras 3 (TensorFlow backend) implementations of the textbook models and train steps, for
side-by-side throughput in `benchmarks.throughput` (only where ``keras`` and TensorFlow are
installed; genjax itself never imports Keras).

Same architectures, objectives and optimizers as the genjax configs and
`benchmarks.torch_reference`, channels last, BatchNorm in training mode. Each step is one
``tf.function``, traced once, with or without XLA (``jit_compile``):

* VAE: one tape over the ELBO.
* GANs with one critic update per step, by default: the tensorflow.org DCGAN tutorial's
  step (genjax's ``gan_update=simultaneous``). One ``fake = G(z)``, D on real and fake
  once, both losses from those scores under two tapes, then both updates (so G's loss
  sees D before D's update).
* WGAN-GP, and any GAN with ``update="alternating"``: the keras.io WGAN-GP example's
  step. ``n_critic`` critic updates, each on a fresh real batch and fresh fakes, the
  penalty's gradient from an inner tape; then a generator update on fresh noise.
"""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402
from keras import layers  # noqa: E402

from benchmarks.peer_timing import timed_row  # noqa: E402

_SUPPORTED = ("vae_mnist", "gan_mlp_mnist", "dcgan_mnist", "lsgan_mnist", "wgan_gp_mnist")


def version() -> str:
    return f"keras {keras.__version__} (TensorFlow {tf.__version__})"


def supports(config_name: str) -> bool:
    """Whether this module has the config's models (SNGAN's is not ported)."""
    return config_name in _SUPPORTED


def _mlp_generator(latent: int) -> keras.Model:
    return keras.Sequential([keras.Input((latent,))] + [
        layer for w in (256, 512, 1024) for layer in (layers.Dense(w), layers.LeakyReLU(0.2))
    ] + [layers.Dense(784, activation="tanh"), layers.Reshape((28, 28, 1))])


def _mlp_discriminator() -> keras.Model:
    return keras.Sequential([keras.Input((28, 28, 1)), layers.Flatten(), layers.Dense(512),
                             layers.LeakyReLU(0.2), layers.Dense(256), layers.LeakyReLU(0.2),
                             layers.Dense(1)])


def _conv_generator(latent: int) -> keras.Model:
    """Dense -> 7x7x128 -> ConvT 128 s2 -> BN -> LReLU -> ConvT 64 s2 -> BN -> LReLU -> 4x4
    stride-1 'same' conv -> tanh (as `benchmarks.torch_reference.conv_generator`)."""
    bn = lambda: layers.BatchNormalization(momentum=0.9, epsilon=1e-5)
    return keras.Sequential([
        keras.Input((latent,)), layers.Dense(7 * 7 * 128), layers.Reshape((7, 7, 128)),
        layers.Conv2DTranspose(128, 4, 2, padding="same", use_bias=False), bn(),
        layers.LeakyReLU(0.2),
        layers.Conv2DTranspose(64, 4, 2, padding="same", use_bias=False), bn(),
        layers.LeakyReLU(0.2),
        layers.Conv2D(1, 4, padding="same", activation="tanh")])


def _conv_discriminator() -> keras.Model:
    return keras.Sequential([keras.Input((28, 28, 1)), layers.Conv2D(64, 4, 2, padding="same"),
                             layers.LeakyReLU(0.2), layers.Conv2D(128, 4, 2, padding="same"),
                             layers.LeakyReLU(0.2), layers.Flatten(), layers.Dense(1)])


def _gan_losses(loss: str):
    """(d_loss(real_scores, fake_scores), g_loss(fake_scores)) as in genjax.losses.gan."""
    bce = lambda s, target: tf.reduce_mean(
        tf.nn.sigmoid_cross_entropy_with_logits(tf.fill(tf.shape(s), target), s))
    if loss == "ns":
        return lambda r, f: bce(r, 1.0) + bce(f, 0.0), lambda f: bce(f, 1.0)
    if loss == "lsgan":
        return (lambda r, f: 0.5 * tf.reduce_mean((r - 1) ** 2) + 0.5 * tf.reduce_mean(f**2),
                lambda f: tf.reduce_mean((f - 1) ** 2))
    if loss == "wgan":
        return (lambda r, f: tf.reduce_mean(f) - tf.reduce_mean(r), lambda f: -tf.reduce_mean(f))
    raise ValueError(f"No Keras reference for loss {loss!r}.")


def _apply(opt: keras.optimizers.Optimizer, tape: tf.GradientTape, loss, model: keras.Model):
    opt.apply_gradients(zip(tape.gradient(loss, model.trainable_variables),
                            model.trainable_variables))


def _vae_step(config, xla: bool):
    hidden, latent, b = config.hidden[0], config.latent_dim, config.batch_size
    enc = keras.Sequential([keras.Input((784,)), layers.Dense(hidden, activation="relu"),
                            layers.Dense(2 * latent)])
    dec = keras.Sequential([keras.Input((latent,)), layers.Dense(hidden, activation="relu"),
                            layers.Dense(784)])
    opt = keras.optimizers.Adam(config.learning_rate)
    x = tf.cast(tf.random.uniform((b, 784)) < 0.5, tf.float32)
    variables = enc.trainable_variables + dec.trainable_variables

    @tf.function(jit_compile=xla)
    def step():
        with tf.GradientTape() as tape:
            mean, logvar = tf.split(enc(x), 2, axis=1)
            z = mean + tf.exp(0.5 * logvar) * tf.random.normal(tf.shape(mean))
            rec = tf.reduce_sum(tf.nn.sigmoid_cross_entropy_with_logits(x, dec(z)), axis=1)
            kl = 0.5 * tf.reduce_sum(mean**2 + tf.exp(logvar) - 1 - logvar, axis=1)
            loss = tf.reduce_mean(rec + kl)
        opt.apply_gradients(zip(tape.gradient(loss, variables), variables))

    return step, b


def _gan_step(config, xla: bool, update: str):
    conv = config.generator == "conv"
    gen = _conv_generator(config.latent_dim) if conv else _mlp_generator(config.latent_dim)
    disc = _conv_discriminator() if conv else _mlp_discriminator()
    adam = lambda lr: keras.optimizers.Adam(lr, beta_1=config.b1, beta_2=config.b2)
    g_opt, d_opt = adam(config.g_learning_rate), adam(config.d_learning_rate)
    d_loss_fn, g_loss_fn = _gan_losses(config.loss)
    b, n_critic, gp, latent = config.batch_size, config.n_critic, config.gp_weight, config.latent_dim
    reals = tf.random.uniform((n_critic, b, 28, 28, 1)) * 2 - 1

    def penalty(real, fake):
        eps = tf.random.uniform((b, 1, 1, 1))
        mid = eps * real + (1 - eps) * fake
        with tf.GradientTape() as inner:
            inner.watch(mid)
            score = disc(mid, training=True)
        grad = tf.reshape(inner.gradient(score, mid), (b, -1))
        return tf.reduce_mean((tf.norm(grad, axis=1) - 1.0) ** 2)

    @tf.function(jit_compile=xla)
    def one_forward_step():
        with tf.GradientTape() as g_tape, tf.GradientTape() as d_tape:
            fake = gen(tf.random.normal((b, latent)), training=True)
            real_s, fake_s = disc(reals[0], training=True), disc(fake, training=True)
            d_loss, g_loss = d_loss_fn(real_s, fake_s), g_loss_fn(fake_s)
        _apply(g_opt, g_tape, g_loss, gen)
        _apply(d_opt, d_tape, d_loss, disc)

    @tf.function(jit_compile=xla)
    def critic_steps():
        for i in range(n_critic):
            with tf.GradientTape() as tape:
                fake = gen(tf.random.normal((b, latent)), training=True)
                d_loss = d_loss_fn(disc(reals[i], training=True), disc(fake, training=True))
                if gp:
                    d_loss += gp * penalty(reals[i], fake)
            _apply(d_opt, tape, d_loss, disc)
        with tf.GradientTape() as tape:
            fake = gen(tf.random.normal((b, latent)), training=True)
            g_loss = g_loss_fn(disc(fake, training=True))
        _apply(g_opt, tape, g_loss, gen)

    return (one_forward_step if update == "simultaneous" else critic_steps), b * n_critic


def measure(name: str, config, seconds: float, windows: int, xla: bool = False,
            update: str = "simultaneous") -> dict:
    """The Keras row of `benchmarks.throughput` for config ``name`` (same windows and
    fields); ``update``: a GAN step's algorithm, ``simultaneous`` (the tutorial's, with one
    critic update per step) or ``alternating``."""
    gan = config.task == "gan"
    update = update if gan and config.n_critic == 1 else "alternating"
    if update not in ("simultaneous", "alternating"):
        raise ValueError(f"No Keras {update} GAN step.")
    step, n = _gan_step(config, xla, update) if gan else _vae_step(config, xla)
    return {"framework": f"{version()} tf.function" + (" + XLA" if xla else "")
            + (f", {update} update" if gan else ""), "config": name,
            "batch_size": config.batch_size, "n_critic": config.get("n_critic", 1),
            "update": update if gan else None, **timed_row(step, n, seconds, windows)}
