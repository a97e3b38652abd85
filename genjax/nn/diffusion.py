"""A small U-Net for diffusion on 28x28 and 32x32 images (Ho et al. 2020's design, scaled
down): residual blocks with GroupNorm and a sinusoidal time embedding, self-attention at
the lowest resolution, and an optional class embedding whose extra index ``num_classes``
is the "no label" token of classifier-free guidance (Ho & Salimans 2022)."""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from genjax.nn.layers import Conv


def timestep_embedding(t: jax.Array, dim: int, max_period: float = 10000.0) -> jax.Array:
    """Sinusoidal embedding of integer timesteps [B] -> [B, dim] (Vaswani et al.; DDPM):
    cos and sin of t at frequencies max_period^(-i / (dim/2)), i < dim/2."""
    half = dim // 2
    freqs = jnp.exp(-np.log(max_period) * jnp.arange(half, dtype=jnp.float32) / half)
    args = t.astype(jnp.float32)[:, None] * freqs[None]
    return jnp.concatenate([jnp.cos(args), jnp.sin(args)], axis=-1)


def _norm(groups: int) -> nn.GroupNorm:
    return nn.GroupNorm(num_groups=groups, epsilon=1e-5)


class ResBlock(nn.Module):
    """GroupNorm-SiLU-conv, plus the projected time embedding, GroupNorm-SiLU-conv (zero
    initialised, so every block starts as the identity), and a 1x1 skip when widths differ."""

    features: int
    groups: int = 8

    @nn.compact
    def __call__(self, x: jax.Array, emb: jax.Array) -> jax.Array:
        h = Conv(self.features, (3, 3))(nn.silu(_norm(self.groups)(x)))
        h = h + nn.Dense(self.features)(nn.silu(emb))[:, None, None, :]
        h = Conv(self.features, (3, 3), kernel_init=nn.initializers.zeros)(
            nn.silu(_norm(self.groups)(h)))
        skip = x if x.shape[-1] == self.features else Conv(self.features, (1, 1))(x)
        return skip + h


class Attention(nn.Module):
    """Single-head self-attention over the pixels of a feature map, with a residual (the
    output projection is zero initialised)."""

    groups: int = 8

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        b, h, w, c = x.shape
        q, k, v = jnp.split(nn.Dense(3 * c)(_norm(self.groups)(x).reshape(b, h * w, c)), 3, -1)
        weights = jax.nn.softmax(jnp.einsum("bqc,bkc->bqk", q, k) / np.sqrt(c), axis=-1)
        out = nn.Dense(c, kernel_init=nn.initializers.zeros)(jnp.einsum("bqk,bkc->bqc", weights, v))
        return x + out.reshape(b, h, w, c)


class UNet(nn.Module):
    """ε- or v-prediction network ``(x [B,H,W,C], t [B] int, labels [B] int | None) -> [B,H,W,C]``.

    Attributes:
      channels: width of the first level; level i has ``channels * channel_mult[i]``.
      channel_mult: one entry per resolution; each level after the first halves H and W
        (28 -> 14 -> 7 for three levels).
      num_res_blocks: residual blocks per level on the way down (one more on the way up,
        which also takes the skip connections).
      attention: self-attention after the blocks of the lowest resolution and in the middle.
      num_classes: > 0 adds a class embedding with ``num_classes + 1`` rows; label
        ``num_classes`` means "unconditional" (classifier-free guidance).
      groups: GroupNorm groups (every width must divide by it).
    """

    channels: int = 32
    channel_mult: Sequence[int] = (1, 2, 2)
    num_res_blocks: int = 1
    attention: bool = True
    num_classes: int = 0
    groups: int = 8

    @nn.compact
    def __call__(self, x: jax.Array, t: jax.Array, labels: jax.Array | None = None) -> jax.Array:
        emb_dim = 4 * self.channels
        emb = nn.Dense(emb_dim)(nn.silu(nn.Dense(emb_dim)(timestep_embedding(t, self.channels))))
        if self.num_classes:
            emb = emb + nn.Embed(self.num_classes + 1, emb_dim)(labels)
        last = len(self.channel_mult) - 1
        h = Conv(self.channels, (3, 3))(x)
        skips = [h]
        for level, mult in enumerate(self.channel_mult):
            for _ in range(self.num_res_blocks):
                h = ResBlock(self.channels * mult, self.groups)(h, emb)
                h = Attention(self.groups)(h) if self.attention and level == last else h
                skips.append(h)
            if level != last:
                h = Conv(h.shape[-1], (3, 3), strides=(2, 2))(h)
                skips.append(h)
        h = ResBlock(h.shape[-1], self.groups)(h, emb)
        h = Attention(self.groups)(h) if self.attention else h
        h = ResBlock(h.shape[-1], self.groups)(h, emb)
        for level in reversed(range(len(self.channel_mult))):
            for _ in range(self.num_res_blocks + 1):
                h = ResBlock(self.channels * self.channel_mult[level], self.groups)(
                    jnp.concatenate([h, skips.pop()], axis=-1), emb)
                h = Attention(self.groups)(h) if self.attention and level == last else h
            if level != 0:
                h = _upsample(h, skips[-1].shape[1:3])
                h = Conv(h.shape[-1], (3, 3))(h)
        h = nn.silu(_norm(self.groups)(h))
        return Conv(x.shape[-1], (3, 3), kernel_init=nn.initializers.zeros)(h)


def _upsample(x: jax.Array, size: tuple[int, int]) -> jax.Array:
    """Nearest-neighbour doubling, cut to ``size`` (7 -> 14, and odd sizes such as 7 from 4)."""
    x = jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)
    return x[:, :size[0], :size[1]]
