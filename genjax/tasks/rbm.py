"""Restricted Boltzmann machines and deep belief nets: config -> layers, optimizer, CD-k /
PCD step (plain or centered), free-energy monitoring, pseudo-likelihood, AIS and
reverse-AIS test log-likelihood, Gibbs-chain samples, filters and reconstructions."""

from __future__ import annotations

from typing import Iterable, Iterator

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from genjax import data as gdata
from genjax import rng
from genjax import state as gstate
from genjax.losses import rbm as L
from genjax.metrics import ais as A
from genjax.nn import rbm as R
from genjax.steps import rbm as rsteps
from genjax.tasks.common import Task, sampler

SHOWN = 100  # filters, samples and reconstruction pairs in each grid


def check(config: ml_collections.ConfigDict, image_shape: tuple[int, ...]) -> None:
    """Refuse what a Bernoulli RBM cannot use, before anything compiles."""
    for field in ("preprocess", "eval_preprocess"):
        value = config.get(field) or config.preprocess
        if value not in ("binarize_static", "binarize_dynamic"):
            raise ValueError(f"Bernoulli RBMs model binary pixels: config.{field} must be "
                             f"'binarize_static' or 'binarize_dynamic', got {value!r}.")
    if not 0 <= config.momentum < 1:
        raise ValueError(f"config.momentum must be in [0, 1), got {config.momentum}.")
    if not 0 <= config.centering_rate < 1:
        raise ValueError(f"config.centering_rate must be in [0, 1) (0: plain RBM), "
                         f"got {config.centering_rate}.")
    for field in ("ais_temperatures", "reverse_ais_temperatures"):
        if config.ais_temperatures and config[field] < 3:
            raise ValueError(f"config.{field} must be 0 (no AIS) or at least 3, got {config[field]}.")
    if config.ais_temperatures and config.ais_runs < 2:
        raise ValueError(f"config.ais_runs must be at least 2 (the spread needs two), "
                         f"got {config.ais_runs}.")
    if config.num_steps < len(config.hidden):
        raise ValueError(f"config.num_steps ({config.num_steps}) must give every one of the "
                         f"{len(config.hidden)} layers at least one step.")


def make_optimizer(config: ml_collections.ConfigDict) -> optax.GradientTransformation:
    """SGD (with ``config.momentum``), the learning rate optionally cosine-decayed, and
    weight decay (L2, ``config.weight_decay``) on the weights only, not the biases."""
    lr = config.learning_rate
    if config.get("lr_decay") == "cosine":
        lr = optax.cosine_decay_schedule(lr, config.num_steps)
    sgd = optax.sgd(lr, momentum=config.momentum or None)
    if not config.weight_decay:
        return sgd
    decay_mask = lambda params: {k: k == "W" for k in params}  # noqa: E731
    return optax.chain(optax.add_decayed_weights(config.weight_decay, mask=decay_mask), sgd)


def layer_sizes(config: ml_collections.ConfigDict, image_shape: tuple[int, ...]) -> list[int]:
    """Visible units of the first layer, then every layer's hidden units."""
    return [int(np.prod(image_shape)), *config.hidden]


def _init(config, sizes, tx):
    """``init(key)``: layers with small random weights, chains of uniform noise, offsets
    at zero (plain) or at 1/2 (centered: the hidden mean of an untrained RBM)."""

    def init(key: jax.Array) -> gstate.TrainState:
        nets, chains, offsets = {}, [], []
        keys = jax.random.split(key, 2 * len(config.hidden) + 1)
        for i, (d, h) in enumerate(zip(sizes[:-1], sizes[1:])):
            params = R.init_params(keys[2 * i], d, h)
            nets[rsteps.layer_name(i)] = gstate.create_net(params, tx)
            chains.append(R.bernoulli(keys[2 * i + 1], jnp.full((config.num_chains, d), 0.5)))
            lam = 0.5 if config.centering_rate else 0.0
            # Default float dtype, not weak-typed: a step's output must match (one trace).
            offsets.append({"visible": jnp.zeros((d,)), "hidden": lam * jnp.ones((h,))})
        return gstate.create(keys[-1], nets, {"chains": chains, "offsets": offsets})

    return init


def _data_init(config, tx):
    """``data_init(state, batch)``: the first layer's visible biases set to the logits of
    the batch's pixel means (Hinton's practical guide), its persistent chains started at
    the batch's digits, and, centered, its visible offset at the batch mean."""

    def data_init(state: gstate.TrainState, batch: dict) -> gstate.TrainState:
        x = batch["image"].reshape(batch["image"].shape[0], -1)
        mean = jnp.mean(x, 0)
        name = rsteps.layer_name(0)
        params = {**state.nets[name].params, "b": A.base_rate_bias(mean, 0.01)}
        chains, offsets = list(state.extra["chains"]), list(state.extra["offsets"])
        chains[0] = jnp.resize(x, chains[0].shape)
        if config.centering_rate:
            offsets[0] = {**offsets[0], "visible": mean}
        nets = {**state.nets, name: gstate.create_net(params, tx)}
        return state.replace(nets=nets, extra={**state.extra, "chains": chains, "offsets": offsets})

    return data_init


def draw_samples(layers: list[L.Params], key: jax.Array, n: int, steps: int) -> jax.Array:
    """``n`` independent Gibbs chains of the top RBM started from uniform noise, ``steps``
    sweeps each, its last p(v | h) propagated down to the pixels: [n, D] in [0, 1]."""
    start_key, key = jax.random.split(key)
    top = layers[-1]
    v = R.bernoulli(start_key, jnp.full((n, top["W"].shape[0]), 0.5))
    probs = R.gibbs_chain(top, v, key, steps)[1]
    return R.propagate_down(layers, probs)


def _split_spec(config) -> gdata.DataSpec:
    """The evaluation data spec (the training digits are read with it too)."""
    return gdata.DataSpec(preprocess=config.get("eval_preprocess") or config.preprocess,
                          **gdata.spec_fields(config))


def flat_images(batches: Iterable[dict]) -> np.ndarray:
    """Every real (unmasked) image of ``batches``, flattened: [N, D]."""
    rows = [np.asarray(b["image"])[np.asarray(b["mask"]) > 0] for b in batches]
    rows = np.concatenate(rows)
    return rows.reshape(len(rows), -1)


@jax.jit
def _monitor(plain: L.Params, test: jax.Array, train: jax.Array, key: jax.Array):
    """Free energies, pseudo-likelihoods and reconstruction error of the digits."""
    recon = L.reconstruction(plain, test)
    return {"free_energy": jnp.mean(L.free_energy(plain, test)),
            "train_free_energy": jnp.mean(L.free_energy(plain, train)),
            "pseudo_likelihood": jnp.mean(L.pseudo_likelihood(plain, test)),
            "sklearn_pseudo_likelihood": jnp.mean(L.sklearn_pseudo_likelihood(
                plain, test, jax.random.randint(key, test.shape[:1], 0, test.shape[1]))),
            "reconstruction_error": jnp.mean(jnp.sum((test - recon) ** 2, -1))}


def forward_ais(plain: L.Params, base: jax.Array, temperatures: int, runs: int,
                key: jax.Array) -> dict[str, jax.Array]:
    """`genjax.metrics.ais.ais_log_z` of ``plain`` from the base-rate model ``base`` with
    ``runs`` chains over ``temperatures`` betas."""
    return jax.jit(A.ais_log_z, static_argnums=3)(plain, base, jnp.asarray(A.betas(temperatures)),
                                                  runs, key)


def likelihoods(plain: L.Params, test: np.ndarray, train: np.ndarray, temperatures: int,
                runs: int, reverse_temperatures: int, key: jax.Array) -> dict[str, float]:
    """The test (and train) log-likelihood in nats per image: forward AIS's estimate
    (``runs`` chains, ``temperatures`` betas), its +-3 standard-error band, the
    reverse-AIS lower estimate (one chain per test digit, ``reverse_temperatures``
    betas) and its standard error; exact as well when H <= 20."""
    base = A.base_rate_bias(jnp.mean(train, 0))
    fwd_key, rev_key = jax.random.split(key)
    z = forward_ais(plain, base, temperatures, runs, fwd_key)
    rev = np.asarray(jax.jit(A.reverse_ais_log_likelihood)(
        plain, base, jnp.asarray(A.betas(reverse_temperatures)), test, rev_key))
    neg_f = -float(jnp.mean(L.free_energy(plain, test)))
    out = {"ais_log_likelihood": neg_f - float(z["log_z"]),
           "ais_log_likelihood_low": neg_f - float(z["log_z_high"]),
           "train_ais_log_likelihood": -float(jnp.mean(L.free_energy(plain, train)))
           - float(z["log_z"]),
           "ais_log_z": float(z["log_z"]),
           "reverse_ais_log_likelihood": float(rev.mean()),
           "reverse_ais_log_likelihood_stderr": float(rev.std(ddof=1) / np.sqrt(len(rev)))}
    if np.isfinite(float(z["log_z_low"])):  # -inf when the spread exceeds the mean
        out["ais_log_likelihood_high"] = neg_f - float(z["log_z_low"])
    if plain["W"].shape[1] <= 20:
        out["exact_log_likelihood"] = neg_f - float(L.log_z_exact(plain))
    return out


def _test_and_train(config, batches: Iterable[dict]) -> tuple[np.ndarray, np.ndarray]:
    """The test digits of ``batches`` and every training digit (read with the evaluation
    preprocessing), flattened."""
    train = gdata.eval_iterator(_split_spec(config), "train",
                                global_batch_size=config.eval_batch_size)
    return flat_images(batches), flat_images(train)


def _make_evaluate(config):
    """``evaluate(state, test batches)``: the monitors of `_monitor` on the test digits and
    the free-energy gap to the training digits (first layer)."""
    key = rng.stream(config.seed, "eval_metrics")

    def evaluate(state: gstate.TrainState, batches: Iterable[dict]) -> dict[str, float]:
        test, train = _test_and_train(config, batches)
        plain = rsteps.plain_layers(state, 1)[0]
        m = {k: float(v) for k, v in _monitor(plain, test, train, key).items()}
        m["free_energy_gap"] = m["free_energy"] - m["train_free_energy"]
        return {f"test/{k}": v for k, v in m.items()}

    return evaluate


def _has_ais(config) -> bool:
    """Whether the run estimates its log-likelihood: a single RBM with AIS configured."""
    return bool(config.ais_temperatures) and len(config.hidden) == 1


def _ais_key(config) -> jax.Array:
    """The key of the final evaluation's AIS (its first split: forward AIS's)."""
    return jax.random.fold_in(rng.stream(config.seed, "eval_metrics"), 1)


def _make_final_evaluate(config):
    """``final_evaluate(state, test batches)``: `likelihoods` of a single RBM (at the end
    of a run only: AIS and reverse AIS take minutes); None for a deep belief net or
    without ``config.ais_temperatures``."""
    if not _has_ais(config):
        return None
    key = _ais_key(config)

    def final_evaluate(state: gstate.TrainState, batches: Iterable[dict]) -> dict[str, float]:
        test, train = _test_and_train(config, batches)
        found = likelihoods(rsteps.plain_layers(state, 1)[0], test, train,
                            config.ais_temperatures, config.ais_runs,
                            config.reverse_ais_temperatures, key)
        return {f"test/{k}": v for k, v in found.items()}

    return final_evaluate


def _make_log_likelihood(config):
    """``log_likelihood(state, batches)`` (`Task`): each digit's -F(v) - log Z with the log
    Z of the final evaluation's forward AIS (the same key, chains and temperatures: its
    ``test/ais_log_likelihood`` is their mean over the test digits), run once per call;
    None where the run has no AIS."""
    if not _has_ais(config):
        return None

    def log_likelihood(state: gstate.TrainState, batches: Iterable[dict]) -> Iterator[np.ndarray]:
        plain = rsteps.plain_layers(state, 1)[0]
        train = flat_images(gdata.eval_iterator(_split_spec(config), "train",
                                                global_batch_size=config.eval_batch_size))
        log_z = forward_ais(plain, A.base_rate_bias(jnp.mean(train, 0)), config.ais_temperatures,
                            config.ais_runs, jax.random.split(_ais_key(config))[0])["log_z"]
        for batch in batches:
            yield np.asarray(-L.free_energy(plain, jnp.asarray(flat_images([batch]))) - log_z)

    return log_likelihood


def _make_images(config, image_shape):
    """``images(state, batch)``: the first layer's filters (each weight column scaled to
    [0, 1]), samples from independent chains and reconstructions (digit, p(v | h))."""
    key = rng.stream(config.seed, "sample_grid")

    @jax.jit
    def pictures(state, x):
        layers = rsteps.plain_layers(state)
        w = layers[0]["W"][:, :SHOWN].T
        lo, hi = w.min(1, keepdims=True), w.max(1, keepdims=True)
        filters = (w - lo) / jnp.maximum(hi - lo, 1e-12)
        samples = draw_samples(layers, key, SHOWN, config.sample_steps)
        recon = L.reconstruction(layers[0], x)
        pairs = jnp.stack([x, recon], 1).reshape(-1, x.shape[-1])
        return filters, samples, pairs

    def images(state: gstate.TrainState, batch: dict) -> dict[str, np.ndarray]:
        x = jnp.asarray(batch["image"][:SHOWN // 2]).reshape(-1, int(np.prod(image_shape)))
        grids = pictures(state, x)
        return {name: np.asarray(g).reshape(-1, *image_shape)
                for name, g in zip(("filters", "samples", "reconstructions"), grids)}

    return images


def build(config: ml_collections.ConfigDict, image_shape: tuple[int, ...],
          axis_name: str | None = None) -> Task:
    """Assemble the RBM / DBN task (see genjax/configs/rbm_pcd_mnist.py)."""
    check(config, image_shape)
    sizes = layer_sizes(config, image_shape)
    tx = make_optimizer(config)
    layers = len(config.hidden)
    step = rsteps.make_train_step(tx, layers=layers, steps_per_layer=-(-config.num_steps // layers),
                                  k=config.cd_k, persistent=config.persistent,
                                  centering_rate=config.centering_rate, axis_name=axis_name)
    b = config.eval_batch_size

    @jax.jit
    def _draw(state: gstate.TrainState, key: jax.Array) -> jax.Array:
        x = draw_samples(rsteps.plain_layers(state), key, b, config.sample_steps)
        return x.reshape(b, *image_shape)

    return Task(init=_init(config, sizes, tx), train_step=step,
                evaluate=_make_evaluate(config), final_evaluate=_make_final_evaluate(config),
                log_likelihood=_make_log_likelihood(config),
                images=_make_images(config, image_shape), examples_per_step=config.batch_size,
                sample=sampler(_draw, b), data_init=_data_init(config, tx))
