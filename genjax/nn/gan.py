"""GAN generators and discriminators (Flax linen).

Every generator maps latents [B, latent] to images [B, H, W, C] in [-1, 1] (tanh);
every discriminator maps images to raw scores [B] (logits for BCE losses). Both take
``train``: BatchNorm uses batch statistics and updates the ``batch_stats`` collection
when training, running averages otherwise. ``bn_axis_name`` makes BatchNorm compute
cross-replica statistics under a data-parallel driver. A layer followed by BatchNorm has
no bias: BatchNorm subtracts it again, so its gradient is zero up to roundoff, which
Adam would blow up into steps of size lr in random directions. ``fast=True`` (default) computes
transposed convolutions with the exact sub-pixel `genjax.nn.layers.ConvTranspose`;
``fast=False`` uses Flax's own layer (same parameters, for comparison).
"""

from __future__ import annotations

import math
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from genjax.nn import layers


def _bn(train: bool, axis_name: str | None) -> nn.BatchNorm:
    # momentum 0.9 = PyTorch's 0.1; epsilon as PyTorch/Keras DCGANs.
    return nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5,
                        axis_name=axis_name)


class MLPGenerator(nn.Module):
    """Textbook MLP generator: latent-256-512-1024-prod(out_shape), LeakyReLU 0.2, tanh."""

    out_shape: Sequence[int] = (28, 28, 1)
    hidden: Sequence[int] = (256, 512, 1024)

    @nn.compact
    def __call__(self, z: jax.Array, train: bool = True) -> jax.Array:
        for width in self.hidden:
            z = nn.leaky_relu(nn.Dense(width)(z), 0.2)
        return jnp.tanh(nn.Dense(math.prod(self.out_shape))(z)).reshape(z.shape[0], *self.out_shape)


class MLPDiscriminator(nn.Module):
    """Textbook MLP discriminator: prod(in_shape)-512-256-1, LeakyReLU 0.2."""

    hidden: Sequence[int] = (512, 256)

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = True) -> jax.Array:
        x = x.reshape(x.shape[0], -1)
        for width in self.hidden:
            x = nn.leaky_relu(nn.Dense(width)(x), 0.2)
        return nn.Dense(1)(x)[:, 0]


class ConvGenerator(nn.Module):
    """Textbook conv generator for 28x28: Dense -> 7x7x128 -> ConvT 128 s2 -> BN -> LReLU
    -> ConvT 64 s2 -> BN -> LReLU -> ConvT C s1 -> tanh (kernels 4x4)."""

    out_shape: Sequence[int] = (28, 28, 1)
    bn_axis_name: str | None = None
    fast: bool = True

    @nn.compact
    def __call__(self, z: jax.Array, train: bool = True) -> jax.Array:
        conv_t = layers.conv_transpose_layer(self.fast)
        h, w, c = self.out_shape
        x = nn.Dense((h // 4) * (w // 4) * 128)(z).reshape(z.shape[0], h // 4, w // 4, 128)
        for f in (128, 64):
            x = conv_t(f, (4, 4), strides=(2, 2), padding="SAME", use_bias=False)(x)
            x = nn.leaky_relu(_bn(train, self.bn_axis_name)(x), 0.2)
        return jnp.tanh(conv_t(c, (4, 4), strides=(1, 1), padding="SAME")(x))


class ConvDiscriminator(nn.Module):
    """Textbook conv critic: conv 64 s2 -> LReLU -> conv 128 s2 -> LReLU -> dense 1 (4x4 kernels)."""

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = True) -> jax.Array:
        for f in (64, 128):
            x = nn.leaky_relu(layers.Conv(f, (4, 4), strides=(2, 2), padding="SAME")(x), 0.2)
        return nn.Dense(1)(x.reshape(x.shape[0], -1))[:, 0]


def _num_upsamplings(size: int) -> tuple[int, int]:
    """(start size, doublings) with start in {4, 7}: 32 -> (4, 3), 64 -> (4, 4), 28 -> (7, 2)."""
    for start in (4, 7):
        n = math.log2(size / start)
        if n >= 1 and n == int(n):
            return start, int(n)
    raise ValueError(f"DCGAN/SNGAN sizes are 4*2^n or 7*2^n, got {size}.")


class DCGANGenerator(nn.Module):
    """DCGAN generator (Radford et al. 2016): Dense to start x start x base*2^(n-1),
    then n stride-2 4x4 transposed convs halving the width, BN+ReLU, tanh output."""

    out_shape: Sequence[int] = (32, 32, 3)
    base: int = 64
    bn_axis_name: str | None = None
    fast: bool = True

    @nn.compact
    def __call__(self, z: jax.Array, train: bool = True) -> jax.Array:
        conv_t = layers.conv_transpose_layer(self.fast)
        h, _, c = self.out_shape
        start, n = _num_upsamplings(h)
        width = self.base * 2 ** (n - 1)
        x = nn.Dense(start * start * width, use_bias=False)(z)
        x = nn.relu(_bn(train, self.bn_axis_name)(x.reshape(z.shape[0], start, start, width)))
        for i in range(n - 1):
            x = conv_t(width // 2 ** (i + 1), (4, 4), strides=(2, 2), padding="SAME",
                       use_bias=False)(x)
            x = nn.relu(_bn(train, self.bn_axis_name)(x))
        return jnp.tanh(conv_t(c, (4, 4), strides=(2, 2), padding="SAME")(x))


class DCGANDiscriminator(nn.Module):
    """DCGAN discriminator: stride-2 4x4 convs doubling from ``base``, BN (not on the
    first layer), LeakyReLU 0.2, dense 1. ``batchnorm=False`` for WGAN-GP critics."""

    base: int = 64
    num_layers: int = 3
    batchnorm: bool = True
    bn_axis_name: str | None = None

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = True) -> jax.Array:
        for i in range(self.num_layers):
            bn = bool(i) and self.batchnorm
            x = layers.Conv(self.base * 2**i, (4, 4), strides=(2, 2), padding="SAME",
                            use_bias=not bn)(x)
            if bn:
                x = _bn(train, self.bn_axis_name)(x)
            x = nn.leaky_relu(x, 0.2)
        return nn.Dense(1)(x.reshape(x.shape[0], -1))[:, 0]


class SNGANGenerator(nn.Module):
    """SNGAN "standard CNN" generator (Miyato et al. 2018, Table 3a): Dense to
    start x start x 8*base, BN+ReLU, stride-2 4x4 transposed convs (4*base, 2*base,
    base, ...), BN+ReLU, 3x3 conv to C channels, tanh. The paper's base is 64."""

    out_shape: Sequence[int] = (32, 32, 3)
    base: int = 64
    bn_axis_name: str | None = None
    fast: bool = True

    @nn.compact
    def __call__(self, z: jax.Array, train: bool = True) -> jax.Array:
        conv_t = layers.conv_transpose_layer(self.fast)
        h, _, c = self.out_shape
        start, n = _num_upsamplings(h)
        width = 8 * self.base
        x = nn.Dense(start * start * width, use_bias=False)(z)
        x = nn.relu(_bn(train, self.bn_axis_name)(x.reshape(z.shape[0], start, start, width)))
        for i in range(n):
            x = conv_t(max(1, width // 2**(i + 1)), (4, 4), strides=(2, 2), padding="SAME",
                       use_bias=False)(x)
            x = nn.relu(_bn(train, self.bn_axis_name)(x))
        return jnp.tanh(layers.Conv(c, (3, 3), padding="SAME")(x))


class SNGANDiscriminator(nn.Module):
    """SNGAN "standard CNN" discriminator (Table 3b): pairs of 3x3 s1 / 4x4 s2 convs
    at 64, 128, 256, a 3x3 conv at 512, LeakyReLU 0.1, dense 1. Spectral
    normalisation is applied to its parameters by `genjax.spectral`, not by layers."""

    widths: Sequence[int] = (64, 128, 256)

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = True) -> jax.Array:
        for f in self.widths:
            x = nn.leaky_relu(layers.Conv(f, (3, 3), padding="SAME")(x), 0.1)
            x = nn.leaky_relu(layers.Conv(f, (4, 4), strides=(2, 2), padding="SAME")(x), 0.1)
        x = nn.leaky_relu(layers.Conv(self.widths[-1] * 2, (3, 3), padding="SAME")(x), 0.1)
        return nn.Dense(1)(x.reshape(x.shape[0], -1))[:, 0]
