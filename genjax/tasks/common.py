"""What the training loop needs from a model family, and shared config helpers."""

from __future__ import annotations

from typing import Callable, Iterable, NamedTuple

import jax
import ml_collections
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
    """

    init: Callable[[jax.Array], TrainState]
    train_step: StepFn
    evaluate: Callable[[TrainState, Iterable[Batch]], dict[str, float]]
    images: Callable[[TrainState, Batch], dict[str, np.ndarray]]


def make_optimizer(config: ml_collections.ConfigDict) -> optax.GradientTransformation:
    """Adam with ``learning_rate``, ``b1``, ``b2`` and optional global-norm clipping."""
    tx = optax.adam(config.learning_rate, b1=config.get("b1", 0.9), b2=config.get("b2", 0.999))
    clip = config.get("grad_clip_norm", None)
    return optax.chain(optax.clip_by_global_norm(clip), tx) if clip else tx


def to_unit_range(images: jax.Array, preprocess: str) -> jax.Array:
    """Map model-space images back to [0, 1] for display."""
    return (images + 1.0) / 2.0 if preprocess == "symmetric" else images
