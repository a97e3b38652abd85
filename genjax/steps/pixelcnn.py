"""Autoregressive steps: the exact negative log-likelihood as the training objective, its
masked test-set sums, and compiled pixel-by-pixel sampling (also from a given top half).

Every function takes the network as ``apply(params, x, labels) -> [B, H, W, P]`` (labels
None for unconditional models) and reads no config.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from genjax.losses import pixelcnn as L
from genjax.losses.discretized import bits_per_dim
from genjax.steps.common import LossFn, check_images, drop_labels, guide, with_null_labels

Apply = Callable[[object, jax.Array, jax.Array | None], jax.Array]


def nll_loss(apply: Apply, likelihood: str, num_mixtures: int = 0, conditional: bool = False,
             label_dropout: float = 0.0, num_classes: int = 0, axis_name: str | None = None
             ) -> LossFn:
    """``loss(params, batch, key)``: the mean over images of -log p(x) in nats (one
    forward pass gives every conditional), with bits/dim as a metric. With
    ``label_dropout``, a conditional model sees each label replaced by the null label
    ``num_classes`` with that probability (`genjax.steps.common.drop_labels`), so that
    one network also learns p(x) and can be sampled with guidance; the key draws only
    that."""

    def loss(params, batch: dict, key: jax.Array):
        check_images(batch)
        x = batch["image"]
        labels = batch["label"] if conditional else None
        if conditional and label_dropout:
            labels = drop_labels(key, labels, label_dropout, num_classes, axis_name)
        out = apply(params, x, labels)
        nll = -L.log_likelihood(likelihood, out, x, num_mixtures)
        value = jnp.mean(nll)
        return value, {"nll": value, "bits_per_dim": bits_per_dim(value, int(np.prod(x.shape[1:])))}

    return loss


def make_image_nll(apply: Apply, likelihood: str, num_mixtures: int = 0,
                   conditional: bool = False) -> Callable[[object, dict], jax.Array]:
    """``nll(params, batch)`` [B]: each image's exact NLL in nats (given its label when
    ``conditional``)."""

    def image_nll(params, batch: dict) -> jax.Array:
        x = batch["image"]
        out = apply(params, x, batch["label"] if conditional else None)
        return -L.log_likelihood(likelihood, out, x, num_mixtures)

    return image_nll


def make_eval(apply: Apply, likelihood: str, num_mixtures: int = 0, conditional: bool = False
              ) -> Callable[[object, dict], dict[str, jax.Array]]:
    """``eval(params, batch)``: the sums over the batch's real rows (``mask``) of the exact
    NLL (nats, `make_image_nll`), its square, and the count, for means and standard errors
    over a test set."""
    image_nll = make_image_nll(apply, likelihood, num_mixtures, conditional)

    def evaluate(params, batch: dict) -> dict[str, jax.Array]:
        nll, mask = image_nll(params, batch), batch["mask"]
        return {"nll": jnp.sum(nll * mask), "nll_sq": jnp.sum(nll * nll * mask),
                "count": jnp.sum(mask)}

    return evaluate


Rowwise = tuple[Callable, Callable]  # (context(params, x, labels), rows(params, x, ctx, labels))
# (init_cache(params, x, labels) -> cache, step(params, x, cache, pos, labels) -> (out [B, P], cache))
Stepwise = tuple[Callable, Callable]


def guided(apply: Apply, rowwise: Rowwise | None, guidance: float, num_classes: int
           ) -> tuple[Apply, Rowwise | None]:
    """``apply`` and ``rowwise`` whose outputs are classifier-free guided logits
    (1 + w) out(x, c) - w out(x, null) (Ho & Salimans 2022, here per pixel: the
    Bernoulli logit of each conditional), both halves in one call on the batch twice;
    the rowwise context is computed for both halves and kept doubled. Needs a network
    trained with label dropout (its null label ``num_classes``)."""

    def guided_apply(params, x, labels):
        return guide(apply(params, *with_null_labels(x, labels, num_classes)), guidance)

    if rowwise is None:
        return guided_apply, None
    context, rows = rowwise

    def guided_context(params, x, labels):
        return context(params, *with_null_labels(x, labels, num_classes))

    def guided_rows(params, line, ctx, labels):
        doubled, both_labels = with_null_labels(line, labels, num_classes)
        return guide(rows(params, doubled, ctx, both_labels), guidance)

    return guided_apply, (guided_context, guided_rows)


def guided_stepwise(stepwise: Stepwise, guidance: float, num_classes: int) -> Stepwise:
    """``stepwise`` (see `make_sampler`) whose outputs are the guided logits of `guided`:
    the cache holds both halves of the batch, each step runs them together."""
    init_cache, step = stepwise

    def guided_init(params, x, labels):
        return init_cache(params, *with_null_labels(x, labels, num_classes))

    def guided_step(params, x, cache, pos, labels):
        doubled, both_labels = with_null_labels(x, labels, num_classes)
        out, cache = step(params, doubled, cache, pos, both_labels)
        return guide(out, guidance), cache

    return guided_init, guided_step


def make_sampler(apply: Apply, likelihood: str, image_shape: tuple[int, int, int],
                 num_mixtures: int = 0, rowwise: Rowwise | None = None,
                 rows_above: int | None = None, stepwise: Stepwise | None = None):
    """``sample(params, key, x, labels, first=0) -> x``: pixels ``first``, ``first + 1``, ...,
    H*W - 1 of ``x`` [B, H, W, C] in raster order, each drawn from the network's output for
    the image so far (position p uses ``fold_in(key, p)``, so a key gives the same images
    whatever ``first``). Pixels before ``first`` are kept: a completion of a given top.

    Without ``rowwise`` every position runs the whole network: H*W forward passes. With
    ``rowwise`` (a network split like `genjax.nn.pixelcnn.GatedPixelCNN`: a context, any
    pytree of [..., H, W, C] arrays whose row i depends only on the rows above, and the
    rest, run on one row from that row of the context) the context runs once per row and
    only the current row's rest per pixel: about H full passes plus H*W one-row passes,
    the same outputs. Without it, ``rows_above`` (how many rows above a pixel the network's
    output there can see; `genjax.nn.pixelcnn.PixelCNN.rows_above`) runs each pass on the
    ``rows_above + 1`` rows ending at the pixel's row (the image's first rows for a pixel
    near the top): row i's output is exact, since the error from the window's missing rows
    moves down at most as many rows as the network sees up.

    With ``stepwise`` (a network with a cache, like `genjax.nn.transformer.PixelTransformer`:
    ``init_cache`` and ``step``, which gives position p's output from the pixels before p
    and the cache of positions before p), one step per position: H*W steps, the given
    pixels of a completion stepped through too (they fill the cache).
    """
    h, w, c = image_shape

    def draw(key, out_row, pos):
        return L.sample(likelihood, jax.random.fold_in(key, pos), out_row, c, num_mixtures)

    def sample(params, key: jax.Array, x: jax.Array, labels: jax.Array | None = None,
               first: int = 0) -> jax.Array:
        if stepwise is not None:
            return _sample_stepwise(stepwise, draw, params, key, x, labels, first)
        if rowwise is None:
            span = h if rows_above is None else min(h, rows_above + 1)

            def body(pos, x):
                i, j = pos // w, pos % w
                top = jnp.clip(i - span + 1, 0, h - span)
                window = jax.lax.dynamic_slice_in_dim(x, top, span, axis=1)
                out = jax.lax.dynamic_index_in_dim(apply(params, window, labels), i - top,
                                                   axis=1, keepdims=False)[:, j]
                return x.at[:, i, j].set(draw(key, out, pos).astype(x.dtype))

            return jax.lax.fori_loop(first, h * w, body, x)
        context, rows = rowwise

        def row_body(i, x):
            ctx = jax.tree.map(lambda t: jax.lax.dynamic_slice_in_dim(t, i, 1, axis=-3),
                               context(params, x, labels))
            line = jax.lax.dynamic_slice_in_dim(x, i, 1, axis=1)

            def pixel_body(j, line):
                out = rows(params, line, ctx, labels)[:, 0, j]
                return line.at[:, 0, j].set(draw(key, out, i * w + j).astype(x.dtype))

            start = jnp.where(i == first // w, first % w, 0)
            line = jax.lax.fori_loop(start, w, pixel_body, line)
            return jax.lax.dynamic_update_slice_in_dim(x, line, i, axis=1)

        return jax.lax.fori_loop(first // w, h, row_body, x)

    return sample


def _sample_stepwise(stepwise: Stepwise, draw: Callable, params, key: jax.Array, x: jax.Array,
                     labels: jax.Array | None, first: int) -> jax.Array:
    """`make_sampler`'s loop for a network with a cache: position p's step, then its pixel
    drawn (kept as given before ``first``)."""
    init_cache, step = stepwise
    w = x.shape[2]

    def body(pos, carry):
        x, cache = carry
        out, cache = step(params, x, cache, pos, labels)
        drawn = draw(key, out, pos).astype(x.dtype)
        x = jnp.where(pos >= first, x.at[:, pos // w, pos % w].set(drawn), x)
        return x, cache

    n = x.shape[1] * w
    return jax.lax.fori_loop(0, n, body, (x, init_cache(params, x, labels)))[0]
