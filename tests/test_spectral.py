"""Spectral normalisation as explicit state, against SVD."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genjax import spectral


class _Net(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = nn.leaky_relu(nn.Conv(8, (4, 4), strides=2)(x), 0.2)
        return nn.Dense(1)(nn.Dense(16)(x.reshape(x.shape[0], -1)))


@pytest.fixture
def params():
    return _Net().init(jax.random.key(0), jnp.ones((1, 8, 8, 3)))["params"]


def _svd_max(kernel):
    return np.linalg.svd(np.asarray(kernel).reshape(-1, kernel.shape[-1]), compute_uv=False)[0]


def test_state_tracks_every_kernel_only(params):
    sn = spectral.init(params, jax.random.key(1))
    assert sorted(sn) == ["Conv_0/kernel", "Dense_0/kernel", "Dense_1/kernel"]
    assert sn["Conv_0/kernel"].shape == (8,)
    np.testing.assert_allclose([jnp.linalg.norm(u) for u in sn.values()], 1.0, rtol=1e-5)


def test_power_iteration_converges_to_svd(params):
    sn = spectral.init(params, jax.random.key(1))
    step = jax.jit(lambda p, s: spectral.normalize(p, s, update=True))
    for _ in range(200):
        normalized, sn = step(params, sn)
    for name, sigma in spectral.sigmas(params, sn).items():
        kernel = params[name.split("/")[0]]["kernel"]
        np.testing.assert_allclose(sigma, _svd_max(kernel), rtol=1e-3, err_msg=name)
        np.testing.assert_allclose(_svd_max(normalized[name.split("/")[0]]["kernel"]), 1.0,
                                   rtol=1e-3, err_msg=name)
    np.testing.assert_array_equal(normalized["Dense_1"]["bias"], params["Dense_1"]["bias"])


def test_update_false_leaves_state_unchanged(params):
    sn = spectral.init(params, jax.random.key(1))
    _, same = spectral.normalize(params, sn, update=False)
    _, moved = spectral.normalize(params, sn, update=True)
    for k in sn:
        np.testing.assert_array_equal(same[k], sn[k])
    assert not all(np.allclose(moved[k], sn[k]) for k in sn)


def test_gradients_treat_u_and_v_as_constants(params):
    sn = spectral.init(params, jax.random.key(1))
    _, sn = spectral.normalize(params, sn, update=True)  # u after one training update
    x = jax.random.normal(jax.random.key(2), (4, 8, 8, 3))
    loss = lambda p: jnp.sum(_Net().apply({"params": spectral.normalize(p, sn, update=False)[0]}, x) ** 2)

    def reference(p):  # W / (v^T W u) with the power-iteration u, v frozen
        q = jax.tree.map(lambda a: a, p)
        for name, u in sn.items():
            layer = name.split("/")[0]
            w = p[layer]["kernel"]
            m = w.reshape(-1, w.shape[-1])
            v = jax.lax.stop_gradient(m @ u / jnp.linalg.norm(m @ u))
            q = {**q, layer: {**q[layer], "kernel": w / (v @ m @ u)}}
        return jnp.sum(_Net().apply({"params": q}, x) ** 2)

    for a, b in zip(jax.tree.leaves(jax.grad(loss)(params)), jax.tree.leaves(jax.grad(reference)(params))):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    grads_wrt_u = jax.grad(lambda s: jnp.sum(spectral.normalize(params, s, update=True)[0]["Dense_0"]["kernel"]))(sn)
    assert all(float(jnp.abs(g).max()) == 0.0 for g in jax.tree.leaves(grads_wrt_u))


def test_wrong_params_are_a_clear_error(params):
    sn = spectral.init(params, jax.random.key(1))
    with pytest.raises(ValueError, match="spectral.init"):
        spectral.normalize({"other": params["Dense_0"]}, sn, update=True)
