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
from genjax.tasks.common import Task, make_optimizer, sampler, to_unit_range

GENERATORS = ("mlp", "conv", "dcgan", "sngan")
DISCRIMINATORS = ("mlp", "conv", "dcgan", "dcgan_nobn", "sngan")
NUM_SAMPLES = 64  # images in every sample grid, from one fixed noise batch


def build_networks(config: ml_collections.ConfigDict, image_shape: tuple[int, int, int]):
    """(generator, discriminator) named by ``config.generator`` / ``config.discriminator``,
    with cross-replica BatchNorm when ``config.parallel`` maps an axis (pmap)."""
    h = image_shape[0]
    fast, axis = config.fast_layers, parallel.step_axis(config.parallel)
    gens = {"mlp": lambda: gnn.MLPGenerator(image_shape),
            "conv": lambda: gnn.ConvGenerator(image_shape, axis, fast),
            "dcgan": lambda: gnn.DCGANGenerator(image_shape, config.base_width, axis, fast),
            "sngan": lambda: gnn.SNGANGenerator(image_shape, config.base_width, axis, fast)}
    layers = max(2, int(np.log2(h)) - 2)  # 28/32 -> 3 stride-2 convs, 64 -> 4
    discs = {"mlp": gnn.MLPDiscriminator, "conv": gnn.ConvDiscriminator,
             "dcgan": lambda: gnn.DCGANDiscriminator(config.base_width, layers, True, axis),
             "dcgan_nobn": lambda: gnn.DCGANDiscriminator(config.base_width, layers, False),
             "sngan": lambda: gnn.SNGANDiscriminator(tuple(config.base_width * 2**i
                                                           for i in range(3)))}
    if config.generator not in gens:
        raise ValueError(f"Unknown generator {config.generator!r}; valid: {', '.join(GENERATORS)}.")
    if config.discriminator not in discs:
        raise ValueError(f"Unknown discriminator {config.discriminator!r}; "
                         f"valid: {', '.join(DISCRIMINATORS)}.")
    return gens[config.generator](), discs[config.discriminator]()


def build(config: ml_collections.ConfigDict, image_shape: tuple[int, int, int]) -> Task:
    """Assemble the GAN task from ``config`` (see experiments/configs/gan_mlp_mnist.py)."""
    gen, disc = build_networks(config, image_shape)
    opt = dict(b1=config.b1, b2=config.b2)
    g_tx = make_optimizer(config.optimizer, config.g_learning_rate, **opt)
    d_tx = make_optimizer(config.optimizer, config.d_learning_rate, **opt)
    ema_decay = config.ema_decay or None
    train_step = gsteps.make_gan_step(
        gen, disc, g_tx, d_tx, latent_dim=config.latent_dim, loss=config.loss,
        label_smoothing=config.label_smoothing, n_critic=config.n_critic,
        gp_weight=config.gp_weight, r1_weight=config.r1_weight,
        clip_value=config.clip_value or None, spectral_norm=config.spectral_norm,
        ema_decay=ema_decay, axis_name=parallel.step_axis(config.parallel))
    noise_key = jax.random.key(config.seed + 1)  # the fixed noise of every sample grid

    def init(key: jax.Array) -> gstate.TrainState:
        g_key, d_key, sn_key, rng = jax.random.split(key, 4)
        g_vars = gen.init(g_key, jnp.zeros((2, config.latent_dim)), train=False)
        d_vars = disc.init(d_key, jnp.zeros((2, *image_shape)), train=False)
        nets = {"gen": gstate.create_net(g_vars["params"], g_tx, g_vars.get("batch_stats")),
                "disc": gstate.create_net(d_vars["params"], d_tx, d_vars.get("batch_stats"))}
        extra = {"spectral": spectral.init(d_vars["params"], sn_key) if config.spectral_norm else {}}
        if ema_decay:
            extra["ema"] = g_vars["params"]
        return gstate.create(rng, nets, extra)

    @jax.jit
    def _samples(state: gstate.TrainState) -> jax.Array:
        params = gsteps.generator_params(state)
        z = jax.random.normal(noise_key, (NUM_SAMPLES, config.latent_dim))
        out, _ = gsteps.apply_net(gen, params, state.nets["gen"].batch_stats, z, train=False)
        return out

    @jax.jit
    def _draw(state: gstate.TrainState, key: jax.Array) -> jax.Array:
        z = jax.random.normal(key, (config.eval_batch_size, config.latent_dim))
        out, _ = gsteps.apply_net(gen, gsteps.generator_params(state), state.nets["gen"].batch_stats,
                                  z, train=False)
        return to_unit_range(out, config.preprocess)

    def evaluate(state: gstate.TrainState, batches: Iterable[dict]) -> dict[str, float]:
        del state, batches  # GANs have no likelihood; the loop adds the sample metrics
        return {}

    def images(state: gstate.TrainState, batch: dict) -> dict[str, np.ndarray]:
        del batch
        return {"samples": np.asarray(to_unit_range(_samples(state), config.preprocess))}

    return Task(init=init, train_step=train_step, evaluate=evaluate, images=images,
                examples_per_step=config.batch_size * config.n_critic,
                sample=sampler(_draw, config.eval_batch_size))
