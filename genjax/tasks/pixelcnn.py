"""Autoregressive models (PixelCNN, Gated PixelCNN, PixelCNN++, the PixelRNNs' Row LSTM
and Diagonal BiLSTM, a Transformer over pixels): config -> network, optimizer, step, the
exact test NLL, samples and completions."""

from __future__ import annotations

import functools
from typing import Iterable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from genjax import precision, rng
from genjax import state as gstate
from genjax.losses import pixelcnn as L
from genjax.losses.discretized import bits_per_dim
from genjax.nn import pixelcnn as P
from genjax.nn import pixelrnn as R
from genjax.nn.transformer import POSITIONALS, PixelTransformer
from genjax.steps import make_train_step
from genjax.steps import pixelcnn as psteps
from genjax.tasks.common import (Task, class_accuracy, make_optimizer, mean_and_stderr,
                                 per_image, sampler, to_unit_range)

MODELS = ("pixelcnn", "gated", "pixelcnn++", *R.KINDS, "transformer")
COMPLETIONS, COMPLETION_DRAWS = 10, 8  # the completion grid: 10 digits, 8 bottom halves each
_PREPROCESS = {"bernoulli": ("binarize_static", "binarize_dynamic"),
               "logistic_mixture": ("symmetric",)}


def check(config: ml_collections.ConfigDict, image_shape: tuple[int, ...]) -> None:
    """Refuse names and combinations the autoregressive pieces cannot use, before anything
    compiles."""
    if config.model not in MODELS:
        raise ValueError(f"config.model must be one of {', '.join(MODELS)}, got {config.model!r}.")
    if config.likelihood not in L.LIKELIHOODS:
        raise ValueError(f"config.likelihood must be one of {', '.join(L.LIKELIHOODS)}, "
                         f"got {config.likelihood!r}.")
    for field in ("preprocess", "eval_preprocess"):
        value = config.get(field) or config.preprocess
        if value not in _PREPROCESS[config.likelihood]:
            raise ValueError(f"config.likelihood={config.likelihood!r} models "
                             f"{'binary' if config.likelihood == 'bernoulli' else '8-bit'} "
                             f"pixels: config.{field} must be one of "
                             f"{', '.join(_PREPROCESS[config.likelihood])}, got {value!r}.")
    if config.likelihood == "logistic_mixture" and config.num_mixtures < 1:
        raise ValueError(f"config.num_mixtures must be positive for the logistic mixture, "
                         f"got {config.num_mixtures}.")
    if len(image_shape) != 3:
        raise ValueError(f"Autoregressive models take images [H, W, C], got shape {image_shape}.")
    _check_model_fields(config)
    _check_guidance(config)


# the fields each newer model reads, with the shipped config that declares them
_MODEL_FIELDS = {"row_lstm": (("unroll", "state_step"), "row_lstm_mnist"),
                 "diagonal_bilstm": (("unroll", "state_step"), "diagonal_bilstm_mnist"),
                 "transformer": (("num_heads", "mlp_ratio", "positional"), "pixel_transformer_mnist")}


def _check_model_fields(config: ml_collections.ConfigDict) -> None:
    """The fields of the PixelRNNs and the Transformer exist and make a network."""
    fields, home = _MODEL_FIELDS.get(config.model, ((), ""))
    for field in fields:
        if field not in config:
            raise ValueError(f"config.model={config.model!r} needs config.{field}: start from "
                             f"the {home} config.")
    if config.model in R.KINDS and config.unroll < 1:
        raise ValueError(f"config.unroll must be at least 1, got {config.unroll}.")
    if config.model in R.KINDS and config.state_step not in ("matmul", "conv"):
        raise ValueError(f"config.state_step must be 'matmul' or 'conv', got {config.state_step!r}.")
    if config.model == "transformer":
        if config.positional not in POSITIONALS:
            raise ValueError(f"config.positional must be one of {', '.join(POSITIONALS)}, "
                             f"got {config.positional!r}.")
        if config.num_heads < 1 or config.features % config.num_heads:
            raise ValueError(f"config.features ({config.features}) must divide into "
                             f"config.num_heads ({config.num_heads}) attention heads.")


def _check_guidance(config: ml_collections.ConfigDict) -> None:
    """Guidance needs a conditional Bernoulli model trained with label dropout."""
    if config.get("label_dropout") and not config.num_classes:
        raise ValueError(f"config.label_dropout={config.label_dropout} needs a conditional "
                         f"model (config.num_classes > 0).")
    if not config.get("guidance"):
        return
    if not config.num_classes or not config.get("label_dropout"):
        raise ValueError(f"config.guidance={config.guidance} needs a conditional model trained "
                         f"with label dropout (config.num_classes > 0 and "
                         f"config.label_dropout > 0: the unconditional half).")
    if config.likelihood != "bernoulli":
        raise ValueError(f"config.guidance={config.guidance} guides Bernoulli logits; "
                         f"config.likelihood={config.likelihood!r} has no such output.")


def build_model(config: ml_collections.ConfigDict, channels: int):
    """The network of ``config.model`` with the output width of ``config.likelihood``."""
    outputs = L.num_params(config.likelihood, channels, config.num_mixtures)
    # Label dropout adds the null label (index num_classes) to the class embeddings.
    k = config.num_classes + (1 if config.num_classes and config.get("label_dropout") else 0)
    if config.model == "pixelcnn":
        return P.PixelCNN(outputs, config.features, config.num_layers, config.head, k)
    if config.model == "gated":
        return P.GatedPixelCNN(outputs, config.features, config.num_layers, config.head, k)
    if config.model in R.KINDS:
        return R.PixelRNN(outputs, config.model, config.features, config.num_layers, config.head,
                          k, config.unroll, config.state_step == "conv")
    if config.model == "transformer":
        return PixelTransformer(outputs, config.features, config.num_layers, config.num_heads,
                                config.mlp_ratio, config.positional, k)
    return P.PixelCNNPP(outputs, config.features, config.num_layers, k)


def _apply(model, config: ml_collections.ConfigDict, method: str = "__call__"):
    """``apply(params, *inputs)`` of ``model``'s ``method`` in the compute dtype."""
    run = precision.in_compute_dtype(functools.partial(model.apply, method=method),
                                     config.compute_dtype)
    return lambda params, *inputs: run({"params": params}, *inputs)


def make_sampler(model, config: ml_collections.ConfigDict, image_shape: tuple[int, ...]):
    """The pixel-by-pixel sampler of ``model`` (`genjax.steps.pixelcnn.make_sampler`): row
    by row with a context computed once per row for the Gated PixelCNN, PixelCNN++ and
    the PixelRNNs, one cached step per pixel for the Transformer, a pass per pixel over
    the rows the plain PixelCNN's output there can see; with ``config.guidance`` w > 0,
    from the guided logits (`genjax.steps.pixelcnn.guided`)."""
    apply = _apply(model, config)
    rowwise = ((_apply(model, config, "context"), _apply(model, config, "rows"))
               if isinstance(model, (P.GatedPixelCNN, P.PixelCNNPP, R.PixelRNN)) else None)
    stepwise = ((_apply(model, config, "init_cache"), _apply(model, config, "step"))
                if isinstance(model, PixelTransformer) else None)
    if config.get("guidance"):  # twice the batch per network call
        apply, rowwise = psteps.guided(apply, rowwise, config.guidance, config.num_classes)
        if stepwise:
            stepwise = psteps.guided_stepwise(stepwise, config.guidance, config.num_classes)
    rows_above = model.rows_above if isinstance(model, P.PixelCNN) else None
    return psteps.make_sampler(apply, config.likelihood, tuple(image_shape),
                               config.num_mixtures, rowwise, rows_above, stepwise)


def _make_evaluate(config, apply, image_shape, sample):
    """``evaluate(state, batches)``: the exact test NLL in nats per image (mean and standard
    error over images) and in bits/dim, and a conditional model's class accuracy."""
    evaluate_batch = jax.jit(psteps.make_eval(apply, config.likelihood, config.num_mixtures,
                                              bool(config.num_classes)))
    accuracy = class_accuracy(config, image_shape, sample)
    dims = int(np.prod(image_shape))

    def evaluate(state: gstate.TrainState, batches: Iterable[dict]) -> dict[str, float]:
        params, totals = state.nets["model"].params, None
        for batch in batches:
            sums = evaluate_batch(params, batch)
            totals = sums if totals is None else jax.tree.map(jnp.add, totals, sums)
        t = {k: float(v) for k, v in jax.device_get(totals).items()}
        mean, stderr = mean_and_stderr(t["nll"], t["nll_sq"], t["count"])
        return {"test/nll": mean, "test/nll_stderr": stderr,
                "test/bits_per_dim": float(bits_per_dim(mean, dims)), **accuracy(state, ())}

    return evaluate


def _make_images(config, draw, image_shape):
    """``images(state, batch)``: samples from a fixed key (one row per class for a
    conditional model) and completions: for each of the first test digits its top half,
    bottom halves drawn given it, and the digit itself, one row per digit."""
    h, w, c = image_shape
    k = config.num_classes
    key = rng.stream(config.seed, "sample_grid")
    n = k * k if k else 100
    labels = jnp.repeat(jnp.arange(k), k) if k else None
    half = (h // 2) * w
    sample_key, completion_key = jax.random.split(key)

    @jax.jit
    def pictures(params, digits, digit_labels):
        samples = draw(params, sample_key, jnp.zeros((n, h, w, c)), labels)
        top = digits.at[:, h // 2:].set(0.0 if config.likelihood == "bernoulli" else -1.0)
        tops = jnp.repeat(top, COMPLETION_DRAWS, axis=0)
        cond = jnp.repeat(digit_labels, COMPLETION_DRAWS) if k else None
        filled = draw(params, completion_key, tops, cond, first=half)
        rows = jnp.concatenate([top[:, None], filled.reshape(len(top), COMPLETION_DRAWS, h, w, c),
                                digits[:, None]], axis=1)
        return samples, rows.reshape(-1, h, w, c)

    def images(state: gstate.TrainState, batch: dict) -> dict[str, np.ndarray]:
        digits = jnp.asarray(batch["image"][:COMPLETIONS])
        given = batch.get("label", np.zeros(len(batch["image"]), np.int32))[:COMPLETIONS]
        samples, completions = pictures(state.nets["model"].params, digits, jnp.asarray(given))
        unit = lambda x: np.asarray(to_unit_range(x, config.preprocess))
        return {"samples": unit(samples), "completions": unit(completions)}

    return images


def build(config: ml_collections.ConfigDict, image_shape: tuple[int, ...],
          axis_name: str | None = None) -> Task:
    """Assemble the autoregressive task (see genjax/configs/gated_pixelcnn_mnist.py)."""
    check(config, image_shape)
    model = build_model(config, image_shape[-1])
    apply = _apply(model, config)
    tx = make_optimizer("adam", config.learning_rate, clip_norm=config.clip_norm or None)
    loss = psteps.nll_loss(apply, config.likelihood, config.num_mixtures, bool(config.num_classes),
                           config.get("label_dropout", 0.0), config.num_classes, axis_name)
    step = make_train_step(loss, tx, axis_name=axis_name)
    dummy = np.zeros((1, *image_shape), np.float32)

    def init(key: jax.Array) -> gstate.TrainState:
        param_key, state_rng = jax.random.split(key)
        labels = np.zeros((1,), np.int32) if config.num_classes else None
        params = model.init(param_key, dummy, labels)["params"]
        return gstate.create(state_rng, {"model": gstate.create_net(params, tx)})

    b = config.eval_batch_size
    eval_labels = jnp.arange(b) % config.num_classes if config.num_classes else None
    draw = make_sampler(model, config, image_shape)

    @jax.jit
    def _draw(state: gstate.TrainState, key: jax.Array) -> jax.Array:
        x = draw(state.nets["model"].params, key, jnp.zeros((b, *image_shape)), eval_labels)
        return to_unit_range(x, config.preprocess)

    sample = sampler(_draw, b)
    image_nll = psteps.make_image_nll(apply, config.likelihood, config.num_mixtures,
                                      bool(config.num_classes))
    log_likelihood = jax.jit(lambda state, batch, key: -image_nll(state.nets["model"].params, batch))
    return Task(init=init, train_step=step,
                evaluate=_make_evaluate(config, apply, image_shape, sample),
                images=_make_images(config, draw, image_shape),
                examples_per_step=config.batch_size, sample=sample,
                log_likelihood=per_image(log_likelihood))
