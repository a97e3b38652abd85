"""GANs: config -> generator, discriminator, optimizers, step, pictures."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from genjax import nn as gnn
from genjax import rng, spectral
from genjax import state as gstate
from genjax.steps import gan as gsteps
from genjax.tasks.common import (Task, check_image_shape, class_accuracy, make_optimizer,
                                 sampler, to_unit_range)

GENERATORS = ("mlp", "conv", "dcgan", "sngan", "progan", "points")
DISCRIMINATORS = ("mlp", "conv", "dcgan", "dcgan_nobn", "sngan", "progan", "points")
# generator -> what it makes (shape -> None when it makes that shape, else what it makes, in
# words). The MLP generators make any shape, and the discriminators but 'progan' (which
# comes with its generator) take any image: stride-2 'SAME' convolutions round sizes up.
GENERATOR_TAKES = {"conv": gnn.conv_generator_takes, "dcgan": gnn.dcgan_generator_takes,
                   "sngan": gnn.dcgan_generator_takes, "progan": gnn.progressive_takes}
NUM_SAMPLES = 64  # images in every sample grid, from one fixed noise batch


def progressive_widths(size: int, base: int) -> tuple[int, ...]:
    """Channels per resolution 4, 8, ..., size: halving from 4 * base down to base."""
    n = max(size // 4, 1).bit_length()  # resolutions 4, 8, ..., up to size
    if size != 4 * 2 ** (n - 1):
        raise ValueError(f"Progressive growing needs a size of 4 * 2^n (pad MNIST to 32 with "
                         f"--config.crop=32), got {size}.")
    return tuple(min(4 * base, base * 2 ** (n - 1 - i)) for i in range(n))


def build_networks(config: ml_collections.ConfigDict, image_shape: tuple[int, ...],
                   axis_name: str | None = None):
    """(generator, discriminator) named by ``config.generator`` / ``config.discriminator``,
    with cross-replica BatchNorm over ``axis_name`` (the pmap driver's axis), the
    discriminator's minibatch features (``config.minibatch``) and, when
    ``config.num_classes`` > 0, class conditioning (``config.conditioning``)."""
    h = image_shape[0]
    fast, axis, base = config.fast_layers, axis_name, config.base_width
    head = gnn.Head(config.minibatch, config.num_classes, config.conditioning, axis,
                    tuple(config.minibatch_kernels))
    gens = {"mlp": lambda: gnn.MLPGenerator(image_shape),
            "conv": lambda: gnn.ConvGenerator(image_shape, axis, fast, base),
            "dcgan": lambda: gnn.DCGANGenerator(image_shape, base, axis, fast),
            "sngan": lambda: gnn.SNGANGenerator(image_shape, base, axis, fast),
            "progan": lambda: gnn.ProGenerator(image_shape, progressive_widths(h, base)),
            "points": lambda: gnn.MLPGenerator(image_shape, (128, 128), "relu", False)}
    layers = max(2, int(np.log2(h)) - 2)  # 28/32 -> 3 stride-2 convs, 64 -> 4
    discs = {"mlp": lambda: gnn.MLPDiscriminator(head=head),
             "conv": lambda: gnn.ConvDiscriminator(head, fast, base),
             "dcgan": lambda: gnn.DCGANDiscriminator(base, layers, True, axis, head, fast),
             "dcgan_nobn": lambda: gnn.DCGANDiscriminator(base, layers, False, head=head, fast=fast),
             "sngan": lambda: gnn.SNGANDiscriminator(tuple(base * 2**i for i in range(3)), head,
                                                     fast),
             "progan": lambda: gnn.ProDiscriminator(progressive_widths(h, base), head),
             # Metz et al. 2017: one ReLU layer of 128 on points scaled by 1/4.
             "points": lambda: gnn.MLPDiscriminator((128,), "relu", 0.25, head)}
    if config.generator not in gens:
        raise ValueError(f"Unknown generator {config.generator!r}; valid: {', '.join(GENERATORS)}.")
    if config.discriminator not in discs:
        raise ValueError(f"Unknown discriminator {config.discriminator!r}; "
                         f"valid: {', '.join(DISCRIMINATORS)}.")
    if (config.generator == "progan") != (config.discriminator == "progan"):
        raise ValueError("Progressive growing needs generator and discriminator 'progan'.")
    takes = GENERATOR_TAKES.get(config.generator, lambda shape: None)(image_shape)
    check_image_shape(config, image_shape, f"generator {config.generator!r}", takes)
    gen = gens[config.generator]()
    if config.num_classes:
        gen = gnn.Conditional(gen, config.num_classes)
    return gen, discs[config.discriminator]()


def _growth(config: ml_collections.ConfigDict, image_shape: tuple[int, ...]):
    """The progressive growth schedule (step -> stage and fade-in), or None."""
    if config.generator != "progan":
        return None
    return gnn.growth_schedule(len(progressive_widths(image_shape[0], config.base_width)),
                               config.fade_steps, config.stable_steps)


def _make_step(config: ml_collections.ConfigDict, gen, disc, g_tx, d_tx, growth,
               axis_name: str | None):
    """The GAN train step of ``config`` (`genjax.steps.gan.make_gan_step`)."""
    return gsteps.make_gan_step(
        gen, disc, g_tx, d_tx, latent_dim=config.latent_dim, loss=config.loss,
        label_smoothing=config.label_smoothing, n_critic=config.n_critic,
        gp_weight=config.gp_weight, r1_weight=config.r1_weight,
        clip_value=config.clip_value or None, spectral_norm=config.spectral_norm,
        ema_decay=config.ema_decay or None, num_classes=config.num_classes,
        unroll_steps=config.unroll_steps, growth=growth, compute_dtype=config.compute_dtype,
        axis_name=axis_name, update=config.get("gan_update", "alternating"),
        pack=config.get("pack", 1))


def _make_init(config: ml_collections.ConfigDict, image_shape: tuple[int, ...], gen, disc,
               g_tx, d_tx, growth):
    """``init(key) -> TrainState``: both networks, their optimizers, spectral-norm vectors,
    the EMA copy and the growth state, each from its own split of ``key``; the
    discriminator takes packs of ``config.pack`` samples (PacGAN)."""
    k, pack = config.num_classes, config.get("pack", 1)

    def init(key: jax.Array) -> gstate.TrainState:
        g_key, d_key, sn_key, state_rng = jax.random.split(key, 4)
        extra = {} if growth is None else {"growth": growth(jnp.zeros((), jnp.int32))}
        labels = jnp.zeros((2,), jnp.int32) if k else None
        grown = (extra["growth"],) if growth else ()
        g_vars = gen.init(g_key, *gsteps.generator_inputs(jnp.zeros((2, config.latent_dim)),
                                                          labels, *grown), train=False)
        packed = gsteps.pack_samples(jnp.zeros((2 * pack, *image_shape)), pack)
        d_vars = disc.init(d_key, packed, labels, *grown, train=False)
        nets = {"gen": gstate.create_net(g_vars["params"], g_tx, g_vars.get("batch_stats")),
                "disc": gstate.create_net(d_vars["params"], d_tx, d_vars.get("batch_stats"))}
        extra["spectral"] = spectral.init(d_vars["params"], sn_key) if config.spectral_norm else {}
        if config.ema_decay:
            extra["ema"] = g_vars["params"]
        return gstate.create(state_rng, nets, extra)

    return init


def build(config: ml_collections.ConfigDict, image_shape: tuple[int, ...],
          axis_name: str | None = None) -> Task:
    """Assemble the GAN task from ``config`` (see genjax/configs/gan_mlp_mnist.py);
    ``axis_name``: the data-parallel axis the step runs under (None: one device)."""
    if config.get("gan_update") == "shared" and config.minibatch != "none":
        raise ValueError(f"config.gan_update='shared' scores real and fake in one batch, which "
                         f"minibatch features ({config.minibatch!r}) would mix; use "
                         f"gan_update='alternating' or 'simultaneous'.")
    if config.get("pack", 1) > 1 and config.minibatch != "none":
        raise ValueError(f"config.pack={config.pack} (PacGAN) and minibatch features "
                         f"({config.minibatch!r}) are two answers to the same problem and are "
                         f"not combined here; use one.")
    gen, disc = build_networks(config, image_shape, axis_name)
    g_tx, d_tx = (make_optimizer(config.optimizer, lr, b1=config.b1, b2=config.b2)
                  for lr in (config.g_learning_rate, config.d_learning_rate))
    growth = _growth(config, image_shape)
    k = config.num_classes
    grid_key = rng.stream(config.seed, "sample_grid")  # the fixed noise of every sample grid
    # A conditional GAN's grid has one row per class (k x k); labels of evaluation
    # samples cycle through the classes, so every class is equally represented.
    grid_labels = jnp.repeat(jnp.arange(k), k) if k else None
    eval_labels = jnp.arange(config.eval_batch_size) % k if k else None

    @jax.jit
    def _samples(state: gstate.TrainState) -> jax.Array:
        n = NUM_SAMPLES if grid_labels is None else len(grid_labels)
        z = jax.random.normal(grid_key, (n, config.latent_dim))
        return to_unit_range(gsteps.generate(gen, state, z, grid_labels), config.preprocess)

    @jax.jit
    def _draw(state: gstate.TrainState, key: jax.Array) -> jax.Array:
        z = jax.random.normal(key, (config.eval_batch_size, config.latent_dim))
        return to_unit_range(gsteps.generate(gen, state, z, eval_labels), config.preprocess)

    def images(state: gstate.TrainState, batch: dict) -> dict[str, np.ndarray]:
        del batch
        if len(image_shape) != 3:  # 2-D points: benchmarks/modes.py plots them
            return {}
        return {"samples": np.asarray(_samples(state))}

    sample = sampler(_draw, config.eval_batch_size)
    return Task(init=_make_init(config, image_shape, gen, disc, g_tx, d_tx, growth),
                train_step=_make_step(config, gen, disc, g_tx, d_tx, growth, axis_name),
                evaluate=class_accuracy(config, image_shape, sample), images=images,
                examples_per_step=config.batch_size * config.n_critic, sample=sample)
