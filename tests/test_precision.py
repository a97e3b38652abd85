"""Mixed precision: bfloat16 arithmetic inside the networks, float32 everywhere else."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from genjax import nn as gnn
from genjax import precision
from genjax import state as gstate
from genjax.steps import gan as gsteps
from genjax.steps import make_train_step
from genjax.steps import vae as vsteps
from genjax.tasks.common import check_config

SHAPE = (8, 8, 1)


def _vae(compute_dtype):
    model = gnn.VAE(gnn.MLPEncoder(8, (32,)), gnn.MLPDecoder(SHAPE, (32,), 1))
    tx = optax.adam(1e-3)
    x = jnp.zeros((1, *SHAPE))
    params = jax.jit(model.init)(jax.random.key(0), x, jax.random.key(1))["params"]
    state = gstate.create(jax.random.key(2), {"model": gstate.create_net(params, tx)})
    step = make_train_step(vsteps.vae_loss(model, compute_dtype=compute_dtype), tx)
    pixels = jax.random.uniform(jax.random.key(3), (16, *SHAPE))
    batch = {"image": (pixels > 0.5).astype(jnp.float32)}
    return step, state, batch


class _Generator(nn.Module):
    """Dense -> BatchNorm -> LeakyReLU -> Dense -> tanh image: small, with BatchNorm."""

    @nn.compact
    def __call__(self, z, train: bool = True):
        h = nn.Dense(32, use_bias=False)(z)
        h = nn.BatchNorm(use_running_average=not train, momentum=0.9)(h)
        return jnp.tanh(nn.Dense(64)(nn.leaky_relu(h, 0.2))).reshape(-1, *SHAPE)


def _wgan_gp(compute_dtype):
    """A BatchNorm generator against the strided conv critic with the gradient penalty: the
    double backward runs through the casts and the fast conv's custom VJP."""
    gen, disc = _Generator(), gnn.ConvDiscriminator()
    tx = optax.adam(1e-3)
    g_vars = jax.jit(gen.init, static_argnames="train")(jax.random.key(0), jnp.zeros((2, 4)),
                                                         train=False)
    d_vars = jax.jit(disc.init, static_argnames="train")(jax.random.key(1), jnp.zeros((2, *SHAPE)),
                                                         train=False)
    nets = {"gen": gstate.create_net(g_vars["params"], tx, g_vars["batch_stats"]),
            "disc": gstate.create_net(d_vars["params"], tx)}
    state = gstate.create(jax.random.key(2), nets, {"spectral": {}})
    step = gsteps.make_gan_step(gen, disc, tx, tx, latent_dim=4, loss="wgan", gp_weight=10.0,
                                compute_dtype=compute_dtype)
    batch = {"image": jax.random.uniform(jax.random.key(3), (8, *SHAPE), minval=-1, maxval=1)}
    return step, state, batch


def _compute_ops(step, state, batch) -> set:
    """Operand dtypes of every matmul and convolution in the step's jaxpr, nested ones too."""
    found = set()

    def walk(jaxpr):
        for eqn in jaxpr.eqns:
            if eqn.primitive.name in ("dot_general", "conv_general_dilated"):
                found.update(str(v.aval.dtype) for v in eqn.invars)
            for sub in jax.core.jaxprs_in_params(eqn.params):
                walk(sub)

    walk(jax.make_jaxpr(step)(state, batch).jaxpr)
    return found


@pytest.mark.parametrize("build", [_vae, _wgan_gp], ids=["vae", "wgan_gp"])
def test_bfloat16_computes_in_bfloat16_and_keeps_float32_state(build):
    step32, state, batch = build("float32")
    step16, _, _ = build("bfloat16")
    assert _compute_ops(step32, state, batch) == {"float32"}
    assert _compute_ops(step16, state, batch) == {"bfloat16"}  # every matmul and conv

    new32, m32 = jax.jit(step32)(state, batch)
    new16, m16 = jax.jit(step16)(state, batch)
    # Same state structure and dtypes: parameters, Adam moments, BatchNorm statistics
    # and the rng stay float32 masters.
    assert jax.tree.structure(new16) == jax.tree.structure(new32)
    assert jax.tree.map(lambda x: x.dtype, new16) == jax.tree.map(lambda x: x.dtype, new32)
    assert all(m.dtype == jnp.float32 for m in m16.values())
    for k in m32:  # losses agree to bfloat16's precision (8 mantissa bits, ~0.4 % per op)
        np.testing.assert_allclose(m16[k], m32[k], rtol=3e-2, atol=3e-2, err_msg=k)
    # The gradients, read from Adam's first moments (1 - b1) * g after one step, point
    # the same way.
    for net in new32.nets:
        mu32, mu16 = (np.concatenate([np.ravel(x) for x in
                                      jax.tree.leaves(s.nets[net].opt_state[0].mu)])
                      for s in (new32, new16))
        cosine = mu32 @ mu16 / (np.linalg.norm(mu32) * np.linalg.norm(mu16))
        assert cosine > 0.99, (net, cosine)


def test_unknown_compute_dtype_is_refused_before_tracing():
    with pytest.raises(ValueError, match="float32, bfloat16"):
        _wgan_gp("float16")
    with pytest.raises(ValueError, match="float32, bfloat16"):
        _vae("fp8")
    with pytest.raises(ValueError, match="config.compute_dtype"):
        check_config({"compute_dtype": "half"})
    assert precision.in_compute_dtype(len, "float32") is len  # float32: nothing wrapped
