"""An autoregressive Transformer over pixels: a decoder-only network with causal
self-attention over the raster order (the image as a sequence of H*W positions).

Position p predicts pixel p from pixels 0 .. p - 1: its input is the embedding of pixel
p - 1 (a learned start vector, or the class's embedding for a conditional model, at
p = 0) plus the embedding of position p, either one learned vector per position
(``positional="learned"``) or the sum of a row's and a column's (``"2d"``). Pre-norm
blocks of multi-head causal attention and a GELU MLP, a final LayerNorm and a linear map
to the likelihood's parameters per pixel, [B, H, W, P] like the PixelCNNs
(`genjax.nn.pixelcnn`), so the same likelihoods, evaluation and sampler use it.

Sampling runs one position per step with a key/value cache (`init_cache`, `step`): each step
embeds the pixel just drawn, appends its keys and values for every layer, and attends
from the new position only, so drawing an image costs H*W one-position steps instead of
H*W full passes; the tests check it draws the images full recomputation draws.
"""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from genjax.nn.layers import Dense

POSITIONALS = ("learned", "2d")
_EMBED_INIT = nn.initializers.normal(0.02)


def attention(q: jax.Array, k: jax.Array, v: jax.Array, visible: jax.Array) -> jax.Array:
    """Softmax attention: q [B, Q, heads, D] over k, v [B, K, heads, D], where
    ``visible`` [Q, K] says which keys each query may see (masked scores get exactly zero
    weight)."""
    scores = jnp.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(q.shape[-1])
    scores = jnp.where(visible, scores, jnp.finfo(scores.dtype).min)
    weights = jax.nn.softmax(scores.astype(jnp.float32), axis=-1).astype(v.dtype)
    return jnp.einsum("bhqk,bkhd->bqhd", weights, v)


class Block(nn.Module):
    """A pre-norm Transformer block: x + attention(LN(x)), then + MLP(LN(x)). ``keys``
    is a function of this block's keys and values [B, S, heads, D] returning the ones to
    attend over and their ``visible`` mask (the causal mask for a full pass; the cache
    with this step's entries written in for sampling); it also returns the new cache."""

    features: int
    num_heads: int
    mlp_ratio: int

    @nn.compact
    def __call__(self, x: jax.Array, keys) -> tuple[jax.Array, tuple]:
        b, s, f = x.shape
        heads = self.num_heads
        qkv = Dense(3 * f)(nn.LayerNorm()(x)).reshape(b, s, 3, heads, f // heads)
        q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
        k_all, v_all, visible, cache = keys(k, v)
        x = x + Dense(f)(attention(q, k_all, v_all, visible).reshape(b, s, f))
        y = Dense(f)(nn.gelu(Dense(self.mlp_ratio * f)(nn.LayerNorm()(x))))
        return x + y, cache


class Positions(nn.Module):
    """[H*W, F]: each position's embedding, learned for the first image size it sees: one
    vector per position (``"learned"``) or a row's plus a column's (``"2d"``)."""

    features: int
    kind: str = "learned"

    @nn.compact
    def __call__(self, h: int, w: int) -> jax.Array:
        if self.kind == "learned":
            return self.param("positions", _EMBED_INIT, (h * w, self.features))
        rows = self.param("rows", _EMBED_INIT, (h, self.features))
        cols = self.param("cols", _EMBED_INIT, (w, self.features))
        return (rows[:, None] + cols[None]).reshape(h * w, self.features)


class PixelTransformer(nn.Module):
    """The decoder-only Transformer over the raster order of the images (their size is
    fixed by the first call, which creates the position embeddings).

    Attributes:
      outputs: parameters per pixel.
      features: width of the token vectors.
      num_layers: Transformer blocks.
      num_heads: attention heads (``features`` must divide by it).
      mlp_ratio: the MLP's hidden width over ``features``.
      positional: "learned" (a vector per position) or "2d" (row vector + column vector).
      num_classes: > 0: the first position's input is the class's embedding.
    """

    outputs: int
    features: int = 64
    num_layers: int = 4
    num_heads: int = 4
    mlp_ratio: int = 4
    positional: str = "learned"
    num_classes: int = 0

    def setup(self):
        if self.positional not in POSITIONALS:
            raise ValueError(f"positional must be one of {', '.join(POSITIONALS)}, "
                             f"got {self.positional!r}.")
        if self.features % self.num_heads:
            raise ValueError(f"features ({self.features}) must divide by num_heads "
                             f"({self.num_heads}).")
        f = self.features
        self.pixel_embed = Dense(f)
        if self.num_classes:
            self.first_token = nn.Embed(self.num_classes, f, embedding_init=_EMBED_INIT)
        else:
            self.start_token = self.param("start", _EMBED_INIT, (f,))
        self.positions = Positions(f, self.positional)
        self.blocks = [Block(f, self.num_heads, self.mlp_ratio) for _ in range(self.num_layers)]
        self.norm, self.out = nn.LayerNorm(), Dense(self.outputs)

    def _first(self, batch: int, labels: jax.Array | None) -> jax.Array:
        """[B, F]: the input of position 0."""
        if self.num_classes:
            return self.first_token(labels)
        return jnp.broadcast_to(self.start_token, (batch, self.features))

    def __call__(self, x: jax.Array, labels: jax.Array | None = None) -> jax.Array:
        b, h, w, c = x.shape
        n = h * w
        previous = self.pixel_embed(x.reshape(b, n, c)[:, :-1])
        first = self._first(b, labels)[:, None].astype(previous.dtype)
        tokens = jnp.concatenate([first, previous], 1)
        tokens = tokens + self.positions(h, w).astype(tokens.dtype)
        causal = jnp.tril(jnp.ones((n, n), bool))
        for block in self.blocks:
            tokens, _ = block(tokens, lambda k, v: (k, v, causal, None))
        return self.out(self.norm(tokens)).reshape(b, h, w, self.outputs)

    def init_cache(self, x: jax.Array, labels: jax.Array | None = None) -> dict:
        """The empty key/value cache for sampling images like ``x``: [layers, B, H*W,
        heads, D] keys and values."""
        b, h, w, _ = x.shape
        shape = (self.num_layers, b, h * w, self.num_heads, self.features // self.num_heads)
        return {"k": jnp.zeros(shape, x.dtype), "v": jnp.zeros(shape, x.dtype)}

    def step(self, x: jax.Array, cache: dict, pos: jax.Array, labels: jax.Array | None = None
             ) -> tuple[jax.Array, dict]:
        """(the parameters [B, outputs] of pixel ``pos``, the cache with its keys and
        values) from image ``x`` [B, H, W, C], whose pixels before ``pos`` are known, and
        the cache of positions before ``pos``."""
        b, h, w, c = x.shape
        pixel = jax.lax.dynamic_index_in_dim(x.reshape(b, h * w, c), jnp.maximum(pos - 1, 0), 1)
        previous = self.pixel_embed(pixel)
        first = self._first(b, labels)[:, None].astype(previous.dtype)
        token = jnp.where(pos == 0, first, previous)
        position = jax.lax.dynamic_index_in_dim(self.positions(h, w), pos, 0)
        token = token + position.astype(token.dtype)
        visible = (jnp.arange(h * w) <= pos)[None]
        ks, vs = [], []
        for i, block in enumerate(self.blocks):
            def keys(k, v, i=i):
                write = lambda old, new: jax.lax.dynamic_update_slice_in_dim(
                    old, new.astype(x.dtype), pos, 1)
                k_all, v_all = write(cache["k"][i], k), write(cache["v"][i], v)
                return k_all, v_all, visible, (k_all, v_all)

            token, (k_all, v_all) = block(token, keys)
            ks.append(k_all)
            vs.append(v_all)
        out = self.out(self.norm(token))[:, 0]
        return out, {"k": jnp.stack(ks), "v": jnp.stack(vs)}
