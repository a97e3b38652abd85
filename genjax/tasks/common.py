"""What the training loop needs from a model family, and shared config helpers."""

from __future__ import annotations

from typing import Callable, Iterable, NamedTuple

import jax
import numpy as np
import optax

from genjax.data import Batch
from genjax.state import TrainState
from genjax.steps import StepFn


class Task(NamedTuple):
    """A model family, assembled from a config by its ``build(config, image_shape)``.

    Attributes:
      init: root key -> fresh `TrainState`.
      train_step: the per-device step ``(state, batch) -> (state, metrics)``, not yet jitted.
      evaluate: (state, batches) -> test metrics (floats), e.g. ``{"test/neg_elbo": ...}``.
      images: (state, a real batch) -> named [N, H, W, C] image batches in [0, 1].
      examples_per_step: real examples one step consumes (batch * n_critic for GANs).
    """

    init: Callable[[jax.Array], TrainState]
    train_step: StepFn
    evaluate: Callable[[TrainState, Iterable[Batch]], dict[str, float]]
    images: Callable[[TrainState, Batch], dict[str, np.ndarray]]
    examples_per_step: int


OPTIMIZERS = ("adam", "rmsprop")


def make_optimizer(name: str, learning_rate: float, *, b1: float = 0.9, b2: float = 0.999,
                   clip_norm: float | None = None) -> optax.GradientTransformation:
    """Adam (``b1``, ``b2``) or RMSprop, optionally after global-norm gradient clipping."""
    if name == "adam":
        tx = optax.adam(learning_rate, b1=b1, b2=b2)
    elif name == "rmsprop":
        tx = optax.rmsprop(learning_rate)
    else:
        raise ValueError(f"Unknown optimizer {name!r}; valid: {', '.join(OPTIMIZERS)}.")
    return optax.chain(optax.clip_by_global_norm(clip_norm), tx) if clip_norm else tx


def to_unit_range(images: jax.Array, preprocess: str) -> jax.Array:
    """Map model-space images back to [0, 1] for display."""
    return (images + 1.0) / 2.0 if preprocess == "symmetric" else images
