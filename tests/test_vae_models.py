"""Autoencoder/VAE modules, the generic train step and the IWAE evaluation."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from genjax import nn as gnn
from genjax import state as gstate
from genjax.steps import SKIPPED, make_train_step, skip_nonfinite
from genjax.steps import vae as vsteps

SHAPE = (28, 28, 1)


def _models(per_pixel=1):
    return {
        "mlp_vae": gnn.VAE(gnn.MLPEncoder(40), gnn.MLPDecoder(SHAPE, outputs_per_pixel=per_pixel)),
        "conv_vae": gnn.VAE(gnn.ConvEncoder(40, (8, 16)),
                            gnn.ConvDecoder(SHAPE, (16, 8), outputs_per_pixel=per_pixel)),
        "mlp_ae": gnn.AutoEncoder(gnn.MLPEncoder(64, (128,)), gnn.MLPDecoder(SHAPE, (128,))),
        "conv_ae": gnn.AutoEncoder(gnn.ConvEncoder(16, (8, 16)), gnn.ConvDecoder(SHAPE, (16, 8))),
    }


def _batch(n=16, seed=0):
    x = (np.random.default_rng(seed).uniform(size=(n, *SHAPE)) < 0.3).astype(np.float32)
    return {"image": jnp.asarray(x), "label": jnp.zeros(n, jnp.int32), "mask": jnp.ones(n)}


@pytest.mark.parametrize("name", ["mlp_vae", "conv_vae", "mlp_ae", "conv_ae"])
def test_shapes_and_standalone_parts(name):
    model = _models()[name]
    x, key = _batch(4)["image"], jax.random.key(0)
    is_vae = isinstance(model, gnn.VAE)
    args = (x, key) if is_vae else (x,)
    params = model.init(key, *args)["params"]
    out = model.apply({"params": params}, *args)
    if is_vae:
        out, mean, log_var = out
        assert mean.shape == log_var.shape == (4, 20)
    assert out.shape == (4, *SHAPE)
    # The decoder is a generator on its own: same params subtree, plain module.
    code = 20 if is_vae else model.encoder.outputs
    z = jnp.ones((3, code))
    via_model = model.apply({"params": params}, z, method=model.decode)
    alone = model.decoder.clone(parent=None).apply({"params": params["decoder"]}, z)
    np.testing.assert_allclose(via_model, alone, rtol=1e-6)


def test_gaussian_decoder_has_mean_and_log_variance():
    model = _models(per_pixel=2)["mlp_vae"]
    x, key = _batch(2)["image"], jax.random.key(0)
    out, _, _ = model.apply(model.init(key, x, key), x, key)
    assert out.shape == (2, 28, 28, 2)
    assert vsteps.decoder_mean(out, "gaussian").shape == (2, *SHAPE)
    assert vsteps.log_likelihood(out, x, "gaussian").shape == (2,)


def test_conv_decoder_rejects_indivisible_sizes():
    with pytest.raises(ValueError, match=r"height and width divide by 4 .*got shape \(30, 30, 1\)"):
        gnn.ConvDecoder((30, 30, 1), (16, 8)).init(jax.random.key(0), jnp.ones((1, 4)))


def test_unknown_likelihood_is_rejected_before_tracing():
    with pytest.raises(ValueError, match="bernoulli, gaussian"):
        vsteps.vae_loss(_models()["mlp_vae"], likelihood="poisson")


def _train(model, loss, steps=40, lr=3e-3):
    tx = optax.adam(lr)
    batch = _batch(32)
    args = (batch["image"][:1], jax.random.key(0)) if isinstance(model, gnn.VAE) else (batch["image"][:1],)
    params = model.init(jax.random.key(1), *args)["params"]
    state = gstate.create(jax.random.key(2), {"model": gstate.create_net(params, tx)})
    step = jax.jit(chex.assert_max_traces(make_train_step(loss, tx), n=1))
    losses = []
    for _ in range(steps):
        state, metrics = step(state, batch)
        losses.append(float(metrics["loss"]))
    return state, losses


@pytest.mark.parametrize("name", ["mlp_vae", "mlp_ae"])
def test_reconstruction_improves_and_step_compiles_once(name):
    chex.clear_trace_counter()
    model = _models()[name]
    loss = (vsteps.vae_loss(model) if isinstance(model, gnn.VAE) else vsteps.ae_loss(model))
    state, losses = _train(model, loss)
    assert int(state.step) == 40
    assert losses[-1] < 0.7 * losses[0], losses[::10]


def test_step_is_a_pure_function_of_state_and_batch():
    model = _models()["mlp_vae"]
    tx = optax.adam(1e-3)
    loss = vsteps.vae_loss(model)
    x = _batch(8)
    params = model.init(jax.random.key(1), x["image"], jax.random.key(0))["params"]
    state = gstate.create(jax.random.key(2), {"model": gstate.create_net(params, tx)})
    step = jax.jit(make_train_step(loss, tx))
    a, _ = step(state, x)
    b, _ = step(state, x)
    chex.assert_trees_all_equal(a, b)  # same (state, batch): same result, no hidden state
    c, _ = step(a, x)
    assert not np.allclose(c.nets["model"].params["encoder"]["Dense_0"]["kernel"],
                           a.nets["model"].params["encoder"]["Dense_0"]["kernel"])


def test_skip_nonfinite_equals_the_step_or_keeps_the_state():
    model = _models()["mlp_vae"]
    tx = optax.sgd(1e-2)  # not Adam: its first step turns roundoff in a zero gradient into ±lr
    x = _batch(8)
    params = model.init(jax.random.key(1), x["image"], jax.random.key(0))["params"]
    state = gstate.create(jax.random.key(2), {"model": gstate.create_net(params, tx)})
    plain = jax.jit(make_train_step(vsteps.vae_loss(model), tx))
    guarded = jax.jit(skip_nonfinite(make_train_step(vsteps.vae_loss(model), tx)))
    (a, ma), (b, mb) = plain(state, x), guarded(state, x)
    # A finite step is untouched (bitwise on CPU; two programs may round differently on GPU).
    chex.assert_trees_all_close(a.nets, b.nets, rtol=1e-5, atol=1e-7)
    assert int(a.step) == int(b.step) == 1
    chex.assert_trees_all_equal(jax.random.key_data(a.rng), jax.random.key_data(b.rng))
    assert float(mb.pop(SKIPPED)) == 0 and ma.keys() == mb.keys()
    chex.assert_trees_all_close(ma, mb, rtol=1e-5)
    bad = {**x, "image": x["image"].at[3, 5, 5, 0].set(jnp.nan)}
    assert not np.isfinite(float(plain(state, bad)[1]["loss"]))
    c, mc = guarded(state, bad)
    assert int(c.step) == 1 and float(mc.pop(SKIPPED)) == 1
    chex.assert_trees_all_equal(c.nets, state.nets)  # parameters and optimizer state kept
    assert all(float(v) == 0 for v in mc.values())


def test_iwae_k1_is_elbo_in_expectation_and_tightens_with_k():
    model = gnn.VAE(gnn.MLPEncoder(8, (32,)), gnn.MLPDecoder(SHAPE, (32,)))
    batch = _batch(16, seed=3)
    params = model.init(jax.random.key(0), batch["image"], jax.random.key(1))["params"]
    keys = jax.random.split(jax.random.key(5), 400)

    def draws(k):
        fn = jax.jit(jax.vmap(vsteps.make_vae_eval(model, num_samples=k, chunk=min(k, 100)),
                              in_axes=(None, None, 0)))
        out = fn(params, batch, keys if k == 1 else keys[:20])
        return out["iwae_nll"] / 16, out["neg_elbo"] / 16

    iwae1, neg_elbo = draws(1)
    diff = np.asarray(iwae1 - neg_elbo)  # same expectation, different KL estimators
    assert abs(diff.mean()) < 4 * diff.std() / np.sqrt(len(diff)), (diff.mean(), diff.std())
    means = [float(np.mean(draws(k)[0])) for k in (1, 10, 100)]
    assert means[0] > means[1] > means[2], means
