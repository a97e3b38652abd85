"""The domain classifier behind the offline FID/IS: config -> CNN, step, test accuracy."""

from __future__ import annotations

from typing import Iterable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from genjax import state as gstate
from genjax.metrics import domain
from genjax.steps import make_train_step
from genjax.tasks.common import Task, make_optimizer


def _loss_and_accuracy(model: domain.DomainClassifier, params, batch: dict):
    logits, _ = model.apply({"params": params}, batch["image"])
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"])
    return ce, (jnp.argmax(logits, -1) == batch["label"]).astype(jnp.float32)


def build(config: ml_collections.ConfigDict, image_shape: tuple[int, int, int],
          axis_name: str | None = None) -> Task:
    """Assemble the classifier task (config: genjax/configs/classifier_mnist5k.py);
    ``axis_name``: the data-parallel axis of the step."""
    if tuple(image_shape) != domain.INPUT_SHAPE or config.preprocess != "unit":
        raise ValueError(f"The domain classifier trains on {domain.INPUT_SHAPE} images with "
                         f"preprocess='unit'; got {tuple(image_shape)} and {config.preprocess!r}.")
    model = domain.DomainClassifier()
    tx = make_optimizer("adam", config.learning_rate)

    def loss_fn(params, batch, key):
        del key
        ce, correct = _loss_and_accuracy(model, params, batch)
        return jnp.mean(ce), {"accuracy": jnp.mean(correct)}

    def init(key: jax.Array) -> gstate.TrainState:
        init_key, rng = jax.random.split(key)
        params = model.init(init_key, jnp.zeros((1, *image_shape)))["params"]
        return gstate.create(rng, {"model": gstate.create_net(params, tx)})

    @jax.jit
    def sums(params, batch):
        """Sums over the batch's real rows (``mask``: the last batch is padded)."""
        ce, correct = _loss_and_accuracy(model, params, batch)
        mask = batch["mask"]
        return jnp.sum(ce * mask), jnp.sum(correct * mask), jnp.sum(mask)

    def evaluate(state: gstate.TrainState, batches: Iterable[dict]) -> dict[str, float]:
        totals = np.zeros(3)
        for batch in batches:
            totals += np.asarray(jax.device_get(sums(state.nets["model"].params, batch)), np.float64)
        return {"test/cross_entropy": totals[0] / totals[2], "test/accuracy": totals[1] / totals[2]}

    def images(state: gstate.TrainState, batch: dict) -> dict[str, np.ndarray]:
        del state, batch
        return {}

    step = make_train_step(loss_fn, tx, axis_name=axis_name)
    return Task(init=init, train_step=step, evaluate=evaluate, images=images,
                examples_per_step=config.batch_size)
