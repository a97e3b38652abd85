"""Encoders, decoders, autoencoders and VAEs as Flax linen modules.

Encoders map images to ``outputs`` features: ``2 * latent`` for a VAE (mean and
log-variance) or ``latent`` for a deterministic autoencoder. Decoders map latents to
``out_shape[:-1] + (out_shape[-1] * outputs_per_pixel,)`` values: Bernoulli logits
(1 per pixel) or Gaussian mean and log-variance (2 per pixel). Each module can be
initialised and applied alone, so a trained decoder is a generator by itself.
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from genjax.losses.vae import reparameterize
from genjax.nn import layers


class MLPEncoder(nn.Module):
    """Flatten, ReLU hidden layers, linear output (textbook VAE: 784-400-(2x20))."""

    outputs: int
    hidden: Sequence[int] = (400,)

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = x.reshape(x.shape[0], -1)
        for width in self.hidden:
            x = nn.relu(nn.Dense(width)(x))
        return nn.Dense(self.outputs)(x)


class MLPDecoder(nn.Module):
    """ReLU hidden layers, linear output reshaped to an image (20-400-784)."""

    out_shape: Sequence[int]
    hidden: Sequence[int] = (400,)
    outputs_per_pixel: int = 1

    @nn.compact
    def __call__(self, z: jax.Array) -> jax.Array:
        h, w, c = self.out_shape
        for width in self.hidden:
            z = nn.relu(nn.Dense(width)(z))
        return nn.Dense(h * w * c * self.outputs_per_pixel)(z).reshape(
            z.shape[0], h, w, c * self.outputs_per_pixel)


class ConvEncoder(nn.Module):
    """Strided 4x4 convolutions (each halves the size), then a linear output."""

    outputs: int
    features: Sequence[int] = (32, 64)

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        for f in self.features:
            x = nn.relu(layers.Conv(f, (4, 4), strides=(2, 2), padding="SAME")(x))
        return nn.Dense(self.outputs)(x.reshape(x.shape[0], -1))


def conv_decoder_takes(shape: Sequence[int], num_layers: int) -> str | None:
    """The images a `ConvDecoder` of ``num_layers`` stride-2 layers makes, in words, when
    ``shape`` is not one of them (None when it is): it starts at (H/2^n)x(W/2^n)."""
    return layers.sides_dividing_by(2 ** num_layers, shape)


class ConvDecoder(nn.Module):
    """Linear to a (H / 2^n) feature map, then 4x4 stride-2 transposed convolutions."""

    out_shape: Sequence[int]
    features: Sequence[int] = (64, 32)
    outputs_per_pixel: int = 1
    fast: bool = True  # exact sub-pixel transposed convolutions (genjax.nn.layers)

    @nn.compact
    def __call__(self, z: jax.Array) -> jax.Array:
        layers.check_takes(f"ConvDecoder with {len(self.features)} upsampling layers",
                           conv_decoder_takes(self.out_shape, len(self.features)), self.out_shape)
        h, w, c = self.out_shape
        scale = 2 ** len(self.features)
        conv_t = layers.conv_transpose_layer(self.fast)
        x = nn.relu(nn.Dense((h // scale) * (w // scale) * self.features[0])(z))
        x = x.reshape(z.shape[0], h // scale, w // scale, self.features[0])
        for f in self.features[1:]:
            x = nn.relu(conv_t(f, (4, 4), strides=(2, 2), padding="SAME")(x))
        return conv_t(c * self.outputs_per_pixel, (4, 4), strides=(2, 2),
                                padding="SAME")(x)


class AutoEncoder(nn.Module):
    """Deterministic autoencoder: x -> z = encoder(x) -> decoder(z)."""

    encoder: nn.Module
    decoder: nn.Module

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.decoder(self.encoder(x))

    def encode(self, x: jax.Array) -> jax.Array:
        return self.encoder(x)

    def decode(self, z: jax.Array) -> jax.Array:
        return self.decoder(z)


class VAE(nn.Module):
    """Gaussian-latent VAE; the encoder must output 2 * latent features.

    The sampling key is an explicit argument (no hidden rng collection), so the
    module is a pure function of (params, x, key).
    """

    encoder: nn.Module
    decoder: nn.Module

    def __call__(self, x: jax.Array, key: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
        """Returns (decoder outputs, posterior mean, posterior log-variance)."""
        mean, log_var = self.encode(x)
        return self.decoder(reparameterize(key, mean, log_var)), mean, log_var

    def encode(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        mean, log_var = jnp.split(self.encoder(x), 2, axis=-1)
        return mean, log_var

    def decode(self, z: jax.Array) -> jax.Array:
        return self.decoder(z)
