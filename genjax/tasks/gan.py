"""GANs: config -> generator, discriminator, optimizers, step, pictures."""

from __future__ import annotations

from typing import Iterable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from genjax import nn as gnn
from genjax import parallel, spectral
from genjax import state as gstate
from genjax.steps import gan as gsteps
from genjax.tasks.common import (Task, domain_extractor_for, make_optimizer, sampler,
                                 to_unit_range)

GENERATORS = ("mlp", "conv", "dcgan", "sngan", "progan", "points")
DISCRIMINATORS = ("mlp", "conv", "dcgan", "dcgan_nobn", "sngan", "progan", "points")
NUM_SAMPLES = 64  # images in every sample grid, from one fixed noise batch


def progressive_widths(size: int, base: int) -> tuple[int, ...]:
    """Channels per resolution 4, 8, ..., size: halving from 4 * base down to base."""
    n = int(np.log2(size // 4)) + 1
    if size != 4 * 2 ** (n - 1):
        raise ValueError(f"Progressive growing needs a size of 4 * 2^n (pad MNIST to 32 with "
                         f"--config.crop=32), got {size}.")
    return tuple(min(4 * base, base * 2 ** (n - 1 - i)) for i in range(n))


def build_networks(config: ml_collections.ConfigDict, image_shape: tuple[int, ...]):
    """(generator, discriminator) named by ``config.generator`` / ``config.discriminator``,
    with cross-replica BatchNorm when ``config.parallel`` maps an axis (pmap), the
    discriminator's minibatch features (``config.minibatch``) and, when
    ``config.num_classes`` > 0, class conditioning (``config.conditioning``)."""
    h = image_shape[0]
    fast, axis, base = config.fast_layers, parallel.step_axis(config.parallel), config.base_width
    head = gnn.Head(config.minibatch, config.num_classes, config.conditioning, axis,
                    tuple(config.minibatch_kernels))
    gens = {"mlp": lambda: gnn.MLPGenerator(image_shape),
            "conv": lambda: gnn.ConvGenerator(image_shape, axis, fast),
            "dcgan": lambda: gnn.DCGANGenerator(image_shape, base, axis, fast),
            "sngan": lambda: gnn.SNGANGenerator(image_shape, base, axis, fast),
            "progan": lambda: gnn.ProGenerator(image_shape, progressive_widths(h, base)),
            "points": lambda: gnn.MLPGenerator(image_shape, (128, 128), "relu", False)}
    layers = max(2, int(np.log2(h)) - 2)  # 28/32 -> 3 stride-2 convs, 64 -> 4
    discs = {"mlp": lambda: gnn.MLPDiscriminator(head=head),
             "conv": lambda: gnn.ConvDiscriminator(head, fast),
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
    gen = gens[config.generator]()
    if config.num_classes:
        gen = gnn.Conditional(gen, config.num_classes)
    return gen, discs[config.discriminator]()


def build(config: ml_collections.ConfigDict, image_shape: tuple[int, ...]) -> Task:
    """Assemble the GAN task from ``config`` (see experiments/configs/gan_mlp_mnist.py)."""
    gen, disc = build_networks(config, image_shape)
    opt = dict(b1=config.b1, b2=config.b2)
    g_tx = make_optimizer(config.optimizer, config.g_learning_rate, **opt)
    d_tx = make_optimizer(config.optimizer, config.d_learning_rate, **opt)
    ema_decay = config.ema_decay or None
    growth = None
    if config.generator == "progan":
        growth = gnn.growth_schedule(len(progressive_widths(image_shape[0], config.base_width)),
                                     config.fade_steps, config.stable_steps)
    k = config.num_classes
    train_step = gsteps.make_gan_step(
        gen, disc, g_tx, d_tx, latent_dim=config.latent_dim, loss=config.loss,
        label_smoothing=config.label_smoothing, n_critic=config.n_critic,
        gp_weight=config.gp_weight, r1_weight=config.r1_weight,
        clip_value=config.clip_value or None, spectral_norm=config.spectral_norm,
        ema_decay=ema_decay, num_classes=k, unroll_steps=config.unroll_steps, growth=growth,
        compute_dtype=config.compute_dtype, axis_name=parallel.step_axis(config.parallel))
    noise_key = jax.random.key(config.seed + 1)  # the fixed noise of every sample grid
    # A conditional GAN's grid has one row per class (k x k); labels of evaluation
    # samples cycle through the classes, so every class is equally represented.
    grid_labels = jnp.repeat(jnp.arange(k), k) if k else None
    eval_labels = jnp.arange(config.eval_batch_size) % k if k else None

    def init(key: jax.Array) -> gstate.TrainState:
        g_key, d_key, sn_key, rng = jax.random.split(key, 4)
        extra = {} if growth is None else {"growth": growth(jnp.zeros((), jnp.int32))}
        labels = jnp.zeros((2,), jnp.int32) if k else None
        grown = (extra["growth"],) if growth else ()
        g_vars = gen.init(g_key, jnp.zeros((2, config.latent_dim)), *([labels] if k else []),
                          *grown, train=False)
        d_vars = disc.init(d_key, jnp.zeros((2, *image_shape)), labels, *grown, train=False)
        nets = {"gen": gstate.create_net(g_vars["params"], g_tx, g_vars.get("batch_stats")),
                "disc": gstate.create_net(d_vars["params"], d_tx, d_vars.get("batch_stats"))}
        extra["spectral"] = spectral.init(d_vars["params"], sn_key) if config.spectral_norm else {}
        if ema_decay:
            extra["ema"] = g_vars["params"]
        return gstate.create(rng, nets, extra)

    @jax.jit
    def _samples(state: gstate.TrainState) -> jax.Array:
        n = NUM_SAMPLES if grid_labels is None else len(grid_labels)
        return gsteps.generate(gen, state, jax.random.normal(noise_key, (n, config.latent_dim)),
                               grid_labels)

    @jax.jit
    def _draw(state: gstate.TrainState, key: jax.Array) -> jax.Array:
        z = jax.random.normal(key, (config.eval_batch_size, config.latent_dim))
        return to_unit_range(gsteps.generate(gen, state, z, eval_labels), config.preprocess)

    sample = sampler(_draw, config.eval_batch_size)

    def evaluate(state: gstate.TrainState, batches: Iterable[dict]) -> dict[str, float]:
        """GANs have no likelihood (the loop adds the sample metrics); a conditional GAN
        on MNIST-like data reports how often the domain classifier recognises the class
        it was asked for, overall and per class."""
        del batches
        extractor = domain_extractor_for(config, image_shape) if k else None
        if extractor is None:
            return {}
        n = config.eval_samples
        probs = np.concatenate([extractor(x)[1] for x in
                                sample(state, jax.random.key(config.seed + 3), n)])
        asked = np.arange(n) % config.eval_batch_size % k  # eval_labels of every chunk
        hit = probs.argmax(-1) == asked
        per_class = {f"test/domain_class_accuracy_{c}": float(hit[asked == c].mean())
                     for c in range(k) if np.any(asked == c)}
        return {"test/domain_class_accuracy": float(hit.mean()), **per_class}

    def images(state: gstate.TrainState, batch: dict) -> dict[str, np.ndarray]:
        del batch
        if len(image_shape) != 3:  # 2-D points: benchmarks/modes.py plots them
            return {}
        return {"samples": np.asarray(to_unit_range(_samples(state), config.preprocess))}

    return Task(init=init, train_step=train_step, evaluate=evaluate, images=images,
                examples_per_step=config.batch_size * config.n_critic, sample=sample)
