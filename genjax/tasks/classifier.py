"""The domain classifier behind the offline FID/IS: config -> CNN, step, test accuracy,
and its export to the registry of classifiers (`genjax.metrics.domain`)."""

from __future__ import annotations

import os
from typing import Iterable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from genjax import data as gdata
from genjax import record
from genjax import state as gstate
from genjax.metrics import domain
from genjax.report import info
from genjax.steps import make_train_step
from genjax.tasks.common import Task, dataset_spec, label_classes, make_optimizer


def _loss_and_accuracy(model: domain.DomainClassifier, params, batch: dict):
    logits, _ = model.apply({"params": params}, batch["image"])
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"])
    return ce, (jnp.argmax(logits, -1) == batch["label"]).astype(jnp.float32)


def build(config: ml_collections.ConfigDict, image_shape: tuple[int, int, int],
          axis_name: str | None = None) -> Task:
    """Assemble the classifier task (config: genjax/configs/classifier_mnist5k.py) for
    ``image_shape`` [H, W, C] and the dataset's classes; ``axis_name``: the data-parallel
    axis of the step. Data without class labels is refused (one-line `ValueError`)."""
    if len(image_shape) != 3 or config.preprocess != "unit":
        raise ValueError(f"The domain classifier trains on [H, W, C] images with "
                         f"preprocess='unit'; got {tuple(image_shape)} and {config.preprocess!r}.")
    classes = label_classes(dataset_spec(config))
    if classes is None:
        raise ValueError(f"config.dataset={config.dataset!r} has no class labels: a domain "
                         f"classifier trains on labelled data only (score unlabelled data with "
                         f"`genjax-evaluate --extractor=inception`).")
    model = domain.DomainClassifier(tuple(int(s) for s in image_shape), classes)
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


def export(state: gstate.TrainState, eval_spec: gdata.DataSpec, image_shape: tuple[int, ...],
           workdir: str, directory: str | None = None) -> domain.Entry:
    """Write the trained classifier of ``workdir`` as a registry entry: in ``directory``, by
    default the registry folder of ``dataset_id(eval_spec)`` at ``image_shape``
    (`genjax.metrics.domain.entry_dir`), with the run's final test accuracy and steps."""
    step, dataset_id = int(state.step), gdata.dataset_id(eval_spec)
    params = state.nets["model"].params
    final = record.final_row(workdir, step) or {}
    shape = tuple(int(s) for s in image_shape)
    entry = domain.export(params, directory or domain.entry_dir(dataset_id, shape),
                          dataset_id=dataset_id, image_shape=shape,
                          num_classes=int(params["Dense_1"]["bias"].shape[0]),
                          test_accuracy=final.get("test/accuracy"), steps=step)
    note = ""
    builtin = domain.BUILTIN.get((dataset_id, shape))
    if builtin and os.path.abspath(builtin) != entry.directory:
        note = (f"; the shipped weights still serve {dataset_id!r} at this shape (found first): "
                f"--export_dir={builtin} replaces them")
    info(f"Classifier for {dataset_id!r} at {'x'.join(map(str, shape))} (test accuracy "
         f"{entry.test_accuracy}) written to {entry.directory}{note}")
    return entry
