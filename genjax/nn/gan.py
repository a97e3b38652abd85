"""GAN generators and discriminators (Flax linen).

Every generator maps latents [B, latent] to images [B, H, W, C] in [-1, 1] (tanh);
every discriminator maps images to raw scores [B] (logits for BCE losses). Both take
``train``: BatchNorm uses batch statistics and updates the ``batch_stats`` collection
when training, running averages otherwise. ``bn_axis_name`` makes BatchNorm compute
cross-replica statistics under a data-parallel driver. A layer followed by BatchNorm has
no bias: BatchNorm subtracts it again, so its gradient is zero up to roundoff, which
Adam would blow up into steps of size lr in random directions. ``fast=True`` (default) computes
transposed convolutions with the exact sub-pixel `genjax.nn.layers.ConvTranspose` and
differentiates strided convolutions through sub-pixel input gradients (`genjax.nn.layers.Conv`);
``fast=False`` uses Flax's own layers (same parameters, for comparison).

Every discriminator ends in a `Head`: optional minibatch features (`genjax.nn.minibatch`)
and, for a class-conditional discriminator, the labels (projection, or one-hot
channels concatenated to the input). `Conditional` makes any generator class-conditional.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from genjax.nn import layers
from genjax.nn.minibatch import MINIBATCH_FEATURES, MinibatchDiscrimination, minibatch_stddev

CONDITIONING = ("projection", "concat")
ACTIVATIONS = {"leaky_relu": lambda x: nn.leaky_relu(x, 0.2), "relu": nn.relu}


def _bn(train: bool, axis_name: str | None) -> nn.BatchNorm:
    # momentum 0.9 = PyTorch's 0.1; epsilon as PyTorch/Keras DCGANs.
    return nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5,
                        axis_name=axis_name)


class Head(nn.Module):
    """What a discriminator does with labels and with its last features (its submodule
    ``head``, holding the final score layer).

    Attributes:
      minibatch: ``none``, ``stddev`` (`genjax.nn.minibatch.minibatch_stddev` on the
        last features) or ``discrimination`` (`MinibatchDiscrimination` on them).
      num_classes: 0 for an unconditional discriminator; else labels are required.
      conditioning: ``projection`` (Miyato & Koyama 2018: score + <embed(y), features>)
        or ``concat`` (one-hot labels as extra input channels / features).
      axis_name: data-parallel axis for minibatch discrimination across replicas.
      kernels: (number, dimension) of minibatch discrimination's kernels; its cost
        grows with number * dimension * batch^2.
    """

    minibatch: str = "none"
    num_classes: int = 0
    conditioning: str = "projection"
    axis_name: str | None = None
    kernels: tuple[int, int] = (100, 5)

    def __post_init__(self):
        if self.minibatch not in MINIBATCH_FEATURES:
            raise ValueError(f"Unknown minibatch feature {self.minibatch!r}; "
                             f"valid: {', '.join(MINIBATCH_FEATURES)}.")
        if self.conditioning not in CONDITIONING:
            raise ValueError(f"Unknown conditioning {self.conditioning!r}; "
                             f"valid: {', '.join(CONDITIONING)}.")
        super().__post_init__()

    def _labels(self, labels: jax.Array | None) -> jax.Array | None:
        if self.num_classes and labels is None:
            raise ValueError("This discriminator is class-conditional: pass labels.")
        return labels if self.num_classes else None

    def condition(self, x: jax.Array, labels: jax.Array | None) -> jax.Array:
        """The input with one-hot labels appended on the last axis (``concat`` only)."""
        labels = self._labels(labels)
        if labels is None or self.conditioning != "concat":
            return x
        onehot = jax.nn.one_hot(labels, self.num_classes, dtype=x.dtype)
        onehot = onehot.reshape(x.shape[0], *(1,) * (x.ndim - 2), self.num_classes)
        return jnp.concatenate([x, jnp.broadcast_to(onehot, (*x.shape[:-1], self.num_classes))], -1)

    @nn.compact
    def __call__(self, h: jax.Array, labels: jax.Array | None) -> jax.Array:
        """Scores [B] from features ``h`` [B, ...]."""
        labels = self._labels(labels)
        if self.minibatch == "stddev":
            h = minibatch_stddev(h)
        h = h.reshape(h.shape[0], -1)
        if self.minibatch == "discrimination":
            h = MinibatchDiscrimination(*self.kernels, axis_name=self.axis_name)(h)
        out = nn.Dense(1)(h)[:, 0]
        if labels is not None and self.conditioning == "projection":
            out = out + jnp.sum(nn.Embed(self.num_classes, h.shape[-1])(labels) * h, axis=-1)
        return out


class Conditional(nn.Module):
    """``generator`` conditioned on class labels: its latent is the noise concatenated with
    a learned embedding of the label (Mirza & Osindero 2014, with an embedding)."""

    generator: nn.Module
    num_classes: int
    embed_dim: int = 50

    @nn.compact
    def __call__(self, z: jax.Array, labels: jax.Array, *args, train: bool = True) -> jax.Array:
        e = nn.Embed(self.num_classes, self.embed_dim)(labels)
        return self.generator(jnp.concatenate([z, e.astype(z.dtype)], -1), *args, train=train)


class MLPGenerator(nn.Module):
    """Textbook MLP generator: latent-256-512-1024-prod(out_shape), LeakyReLU 0.2, tanh.
    ``activation="relu", tanh_output=False`` with ``hidden=(128, 128)`` is the 2-D
    point generator of the unrolled-GAN paper (Metz et al. 2017)."""

    out_shape: Sequence[int] = (28, 28, 1)
    hidden: Sequence[int] = (256, 512, 1024)
    activation: str = "leaky_relu"
    tanh_output: bool = True

    @nn.compact
    def __call__(self, z: jax.Array, train: bool = True) -> jax.Array:
        for width in self.hidden:
            z = ACTIVATIONS[self.activation](nn.Dense(width)(z))
        x = nn.Dense(math.prod(self.out_shape))(z)
        return (jnp.tanh(x) if self.tanh_output else x).reshape(z.shape[0], *self.out_shape)


class MLPDiscriminator(nn.Module):
    """Textbook MLP discriminator: prod(in_shape)-512-256-1, LeakyReLU 0.2. The inputs
    are multiplied by ``input_scale`` first (Metz et al. scale 2-D points by 1/4)."""

    hidden: Sequence[int] = (512, 256)
    activation: str = "leaky_relu"
    input_scale: float = 1.0
    head: Head = Head()

    @nn.compact
    def __call__(self, x: jax.Array, labels: jax.Array | None = None, train: bool = True
                 ) -> jax.Array:
        x = self.head.condition(x.reshape(x.shape[0], -1) * self.input_scale, labels)
        for width in self.hidden:
            x = ACTIVATIONS[self.activation](nn.Dense(width)(x))
        return self.head(x, labels)


def conv_generator_takes(shape: Sequence[int]) -> str | None:
    """The images `ConvGenerator` makes, in words, when ``shape`` is not one of them (None
    when it is): it starts at (H/4)x(W/4) and doubles twice."""
    return layers.sides_dividing_by(4, shape)


class ConvGenerator(nn.Module):
    """Textbook conv generator for 28x28: Dense -> 7x7x128 -> ConvT 128 s2 -> BN -> LReLU
    -> ConvT 64 s2 -> BN -> LReLU -> ConvT C s1 -> tanh (kernels 4x4). ``base`` scales the
    widths (2·base, base); the textbook net is base 64, and base 32 costs a quarter."""

    out_shape: Sequence[int] = (28, 28, 1)
    bn_axis_name: str | None = None
    fast: bool = True
    base: int = 64

    @nn.compact
    def __call__(self, z: jax.Array, train: bool = True) -> jax.Array:
        layers.check_takes("ConvGenerator", conv_generator_takes(self.out_shape), self.out_shape)
        conv_t = layers.conv_transpose_layer(self.fast)
        h, w, c = self.out_shape
        top = 2 * self.base
        x = nn.Dense((h // 4) * (w // 4) * top)(z).reshape(z.shape[0], h // 4, w // 4, top)
        for f in (top, self.base):
            x = conv_t(f, (4, 4), strides=(2, 2), padding="SAME", use_bias=False)(x)
            x = nn.leaky_relu(_bn(train, self.bn_axis_name)(x), 0.2)
        return jnp.tanh(conv_t(c, (4, 4), strides=(1, 1), padding="SAME")(x))


class ConvDiscriminator(nn.Module):
    """Textbook conv critic: conv 64 s2 -> LReLU -> conv 128 s2 -> LReLU -> dense 1 (4x4
    kernels); ``base`` scales the widths (base, 2·base)."""

    head: Head = Head()
    fast: bool = True
    base: int = 64

    @nn.compact
    def __call__(self, x: jax.Array, labels: jax.Array | None = None, train: bool = True
                 ) -> jax.Array:
        x = self.head.condition(x, labels)
        for f in (self.base, 2 * self.base):
            x = nn.leaky_relu(layers.conv_layer(self.fast)(f, (4, 4), strides=(2, 2),
                                                           padding="SAME")(x), 0.2)
        return self.head(x, labels)


def _num_upsamplings(size: int) -> tuple[int, int] | None:
    """(start size, doublings) with start in {4, 7}: 32 -> (4, 3), 64 -> (4, 4), 28 -> (7, 2);
    None for a size that is not start * 2^n with n >= 1."""
    for start in (4, 7):
        doublings = size // start
        if size % start == 0 and doublings >= 2 and doublings & (doublings - 1) == 0:
            return start, doublings.bit_length() - 1
    return None


def dcgan_generator_takes(shape: Sequence[int]) -> str | None:
    """The images the DCGAN and SNGAN generators make, in words, when ``shape`` is not one
    of them (None when it is): square, from 4x4 or 7x7 doubled at least once."""
    if len(shape) == 3 and shape[0] == shape[1] and _num_upsamplings(shape[0]):
        return None
    return ("square images [S, S, C] with S = 4*2^n or 7*2^n, n >= 1 (8, 14, 16, 28, 32, 56, "
            "64, ...)")


def _upsamplings(net: str, shape: Sequence[int]) -> tuple[int, int]:
    """`_num_upsamplings` of a DCGAN/SNGAN generator's ``out_shape``, refused when it has none."""
    layers.check_takes(net, dcgan_generator_takes(shape), shape)
    return _num_upsamplings(shape[0])


def _project_and_upsample(z: jax.Array, start: int, width: int, widths: Sequence[int],
                          conv_t: Callable, train: bool, bn_axis_name: str | None) -> jax.Array:
    """The DCGAN-style generator trunk, called inside a compact ``__call__`` (its layers are
    the caller's): Dense to start x start x ``width``, BN+ReLU, then per entry of ``widths`` a
    stride-2 4x4 transposed convolution to that width, BN+ReLU."""
    x = nn.Dense(start * start * width, use_bias=False)(z)
    x = nn.relu(_bn(train, bn_axis_name)(x.reshape(z.shape[0], start, start, width)))
    for w in widths:
        x = conv_t(w, (4, 4), strides=(2, 2), padding="SAME", use_bias=False)(x)
        x = nn.relu(_bn(train, bn_axis_name)(x))
    return x


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
        c = self.out_shape[-1]
        start, n = _upsamplings("DCGANGenerator", self.out_shape)
        width = self.base * 2 ** (n - 1)
        x = _project_and_upsample(z, start, width, [width // 2 ** (i + 1) for i in range(n - 1)],
                                  conv_t, train, self.bn_axis_name)
        return jnp.tanh(conv_t(c, (4, 4), strides=(2, 2), padding="SAME")(x))


class DCGANDiscriminator(nn.Module):
    """DCGAN discriminator: stride-2 4x4 convs doubling from ``base``, BN (not on the
    first layer), LeakyReLU 0.2, dense 1. ``batchnorm=False`` for WGAN-GP critics."""

    base: int = 64
    num_layers: int = 3
    batchnorm: bool = True
    bn_axis_name: str | None = None
    head: Head = Head()
    fast: bool = True

    @nn.compact
    def __call__(self, x: jax.Array, labels: jax.Array | None = None, train: bool = True
                 ) -> jax.Array:
        x = self.head.condition(x, labels)
        for i in range(self.num_layers):
            bn = bool(i) and self.batchnorm
            x = layers.conv_layer(self.fast)(self.base * 2**i, (4, 4), strides=(2, 2),
                                             padding="SAME", use_bias=not bn)(x)
            if bn:
                x = _bn(train, self.bn_axis_name)(x)
            x = nn.leaky_relu(x, 0.2)
        return self.head(x, labels)


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
        c = self.out_shape[-1]
        start, n = _upsamplings("SNGANGenerator", self.out_shape)
        width = 8 * self.base
        x = _project_and_upsample(z, start, width, [max(1, width // 2**(i + 1)) for i in range(n)],
                                  conv_t, train, self.bn_axis_name)
        return jnp.tanh(layers.Conv(c, (3, 3), padding="SAME")(x))


class SNGANDiscriminator(nn.Module):
    """SNGAN "standard CNN" discriminator (Table 3b): pairs of 3x3 s1 / 4x4 s2 convs
    at 64, 128, 256, a 3x3 conv at 512, LeakyReLU 0.1, dense 1. Spectral
    normalisation is applied to its parameters by `genjax.spectral`, not by layers."""

    widths: Sequence[int] = (64, 128, 256)
    head: Head = Head()
    fast: bool = True

    @nn.compact
    def __call__(self, x: jax.Array, labels: jax.Array | None = None, train: bool = True
                 ) -> jax.Array:
        x = self.head.condition(x, labels)
        conv = layers.conv_layer(self.fast)
        for f in self.widths:
            x = nn.leaky_relu(conv(f, (3, 3), padding="SAME")(x), 0.1)
            x = nn.leaky_relu(conv(f, (4, 4), strides=(2, 2), padding="SAME")(x), 0.1)
        x = nn.leaky_relu(layers.Conv(self.widths[-1] * 2, (3, 3), padding="SAME")(x), 0.1)
        return self.head(x, labels)
