"""Progressive growing (Karras et al. 2018): networks trained from 4x4 up to full size.

Both networks hold the layers of every resolution from the start (one fixed parameter
tree, so a checkpoint taken at any stage restores into the same state) and take the
growth state ``{"stage": int32, "alpha": float32}`` as an input. At ``stage`` s the
working resolution is 4 * 2^s; while a new resolution fades in, ``alpha`` goes from
0 to 1 and the new layers' output is blended with the upsampled (generator) or
downsampled (discriminator) output of the previous resolution. The stage is a traced
value: every resolution's path is computed and the stage's output picked with
``jnp.where`` (gradients reach only the layers in use), so growing never recompiles,
and the growth state lives in the train state, which is what lets a run checkpoint and
resume mid-fade. Not `lax.switch` / `flax.linen.switch`: XLA:CPU compiles convolutions
inside a conditional without its fast kernels (a conv gradient in a switch took 2.2 s
against 0.078 s straight-line, measured; jax-ml/jax#12868 is the loop case). The price:
a step costs what it costs at full resolution from the first stage on (the generator
runs its whole trunk, the discriminator each block once).

The generator always returns full-size images (the working resolution upsampled,
nearest neighbour) and the discriminator always takes full-size images (average-pooled
to the working resolution), so data, samples and metrics never change shape. Real and
generated images both go through the same fade-in blend, as the paper blends the reals.
Simplifications: no equalised learning rate; the discriminator ends in a `Head`
(minibatch standard deviation by default) instead of the paper's 4x4 conv block.
"""

from __future__ import annotations

from typing import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from genjax.nn import layers
from genjax.nn.gan import Head

Growth = dict[str, jax.Array]


def growth_schedule(num_stages: int, fade_steps: int, stable_steps: int
                    ) -> Callable[[jax.Array], Growth]:
    """step -> growth state: ``stable_steps`` at 4x4, then for every further stage
    ``fade_steps`` with alpha rising linearly from 0 to 1 and ``stable_steps`` at alpha 1;
    the last stage lasts for ever."""

    def at(step: jax.Array) -> Growth:
        t = jnp.maximum(step - stable_steps, 0)
        grown = jnp.where(step >= stable_steps, 1 + t // (fade_steps + stable_steps), 0)
        stage = jnp.minimum(grown, num_stages - 1).astype(jnp.int32)
        into = t - (stage - 1) * (fade_steps + stable_steps)  # steps into this stage
        alpha = jnp.where(stage > 0, jnp.clip(into / max(fade_steps, 1), 0.0, 1.0), 1.0)
        return {"stage": stage, "alpha": alpha.astype(jnp.float32)}

    return at


def upsample(x: jax.Array, factor: int) -> jax.Array:
    """Nearest-neighbour upsampling of [B, H, W, C] by an integer factor."""
    return jnp.repeat(jnp.repeat(x, factor, axis=1), factor, axis=2) if factor > 1 else x


def downsample(x: jax.Array, factor: int) -> jax.Array:
    """Average pooling of [B, H, W, C] over factor x factor blocks."""
    if factor == 1:
        return x
    b, h, w, c = x.shape
    return x.reshape(b, h // factor, factor, w // factor, factor, c).mean(axis=(2, 4))


def _pixel_norm(x: jax.Array) -> jax.Array:
    return x * jax.lax.rsqrt(jnp.mean(x * x, axis=-1, keepdims=True) + 1e-8)


def _act(x: jax.Array) -> jax.Array:
    return nn.leaky_relu(x, 0.2)


def progressive_takes(shape: Sequence[int]) -> str | None:
    """The images progressive networks make and take, in words, when ``shape`` is not one of
    them (None when it is): square, grown from 4x4 by doublings."""
    side = shape[0] if len(shape) == 3 and shape[0] == shape[1] else 0
    if side >= 4 and side % 4 == 0 and (side // 4) & (side // 4 - 1) == 0:
        return None
    return "square images [S, S, C] with S = 4*2^n (4, 8, 16, 32, 64, ...)"


def _check_size(size: int, num_stages: int) -> None:
    if size != 4 * 2 ** (num_stages - 1):
        raise ValueError(f"Progressive networks with {num_stages} stages make "
                         f"{4 * 2 ** (num_stages - 1)}x{4 * 2 ** (num_stages - 1)} images, "
                         f"got size {size}; give one width per resolution from 4x4.")


class _UpBlock(nn.Module):
    """Double the resolution: upsample, two 3x3 convs with LeakyReLU and pixel norm."""

    width: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = upsample(x, 2)
        for _ in range(2):
            x = _pixel_norm(_act(layers.Conv(self.width, (3, 3), padding="SAME")(x)))
        return x


class _DownBlock(nn.Module):
    """Halve the resolution: two 3x3 convs with LeakyReLU, then 2x2 average pooling."""

    widths: tuple[int, int]

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        for w in self.widths:
            x = _act(layers.Conv(w, (3, 3), padding="SAME")(x))
        return downsample(x, 2)


def _stage_and_alpha(module: nn.Module, growth: Growth | None) -> tuple[jax.Array, jax.Array]:
    if growth is None:
        raise ValueError(f"{type(module).__name__} needs the growth state "
                         "{'stage': ..., 'alpha': ...} as input.")
    return jnp.asarray(growth["stage"]), jnp.asarray(growth["alpha"], jnp.float32)


class ProGenerator(nn.Module):
    """Progressive generator: pixel-normed latent -> 4x4 (dense + 3x3 conv), one
    `_UpBlock` per further resolution, a 1x1 "to RGB" conv per resolution, tanh.

    Attributes:
      out_shape: (H, W, C) with H = W = 4 * 2^(len(widths) - 1).
      widths: channels at 4x4, 8x8, ... (one per stage).
    """

    out_shape: Sequence[int] = (32, 32, 1)
    widths: Sequence[int] = (128, 128, 64, 32)

    def setup(self):
        _check_size(self.out_shape[0], len(self.widths))
        self.start = nn.Dense(16 * self.widths[0])
        self.start_conv = layers.Conv(self.widths[0], (3, 3), padding="SAME")
        self.blocks = [_UpBlock(w) for w in self.widths[1:]]
        self.to_rgb = [layers.Conv(self.out_shape[-1], (1, 1)) for _ in self.widths]

    def __call__(self, z: jax.Array, growth: Growth | None = None, train: bool = True
                 ) -> jax.Array:
        stage, alpha = _stage_and_alpha(self, growth)
        n = len(self.widths)
        x = _pixel_norm(_act(self.start(_pixel_norm(z)))).reshape(z.shape[0], 4, 4, -1)
        feats = [_pixel_norm(_act(self.start_conv(x)))]
        for block in self.blocks:
            feats.append(block(feats[-1]))
        rgb = [to_rgb(f) for to_rgb, f in zip(self.to_rgb, feats)]
        out = rgb[0]
        for s in range(1, n):  # stage s: resolution s faded in over the upsampled s - 1
            out = jnp.where(stage == s, alpha * rgb[s] + (1.0 - alpha) * upsample(rgb[s - 1], 2),
                            upsample(out, 2))
        return jnp.tanh(out)


class ProDiscriminator(nn.Module):
    """Progressive discriminator: a 1x1 "from RGB" conv per resolution, one `_DownBlock`
    per resolution above 4x4, a 3x3 conv at 4x4, then ``head``.

    Attributes:
      widths: channels at 4x4, 8x8, ... (one per stage), as the generator's.
      head: minibatch features and conditioning (`genjax.nn.gan.Head`).
    """

    widths: Sequence[int] = (128, 128, 64, 32)
    head: Head = Head(minibatch="stddev")

    def setup(self):
        self.from_rgb = [layers.Conv(w, (1, 1)) for w in self.widths]
        self.blocks = [_DownBlock((self.widths[i], self.widths[i - 1]))
                       for i in range(1, len(self.widths))]
        self.final = layers.Conv(self.widths[0], (3, 3), padding="SAME")

    def __call__(self, x: jax.Array, labels: jax.Array | None = None,
                 growth: Growth | None = None, train: bool = True) -> jax.Array:
        stage, alpha = _stage_and_alpha(self, growth)
        n = len(self.widths)
        _check_size(x.shape[1], n)
        x = self.head.condition(x, labels)
        h = None  # features at the current resolution, meaningful once stage >= it
        for s in reversed(range(n)):  # full resolution down to 4x4
            xs = downsample(x, 2 ** (n - 1 - s))
            if s:  # the reals' (and fakes') fade-in blend at the stage's own resolution
                low = downsample(xs, 2)
                xs = alpha * xs + (1.0 - alpha) * upsample(low, 2)
            enter = _act(self.from_rgb[s](xs))
            h = enter if h is None else jnp.where(stage == s, enter, h)
            if s:
                out = self.blocks[s - 1](h)
                faded = alpha * out + (1.0 - alpha) * _act(self.from_rgb[s - 1](low))
                h = jnp.where(stage == s, faded, out)
        return self.head(_act(self.final(h)), labels)
