"""GAN objectives and penalties against hand-computed values and finite differences."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genjax.losses import gan, penalties

REAL = jnp.array([2.0, -1.0, 0.5])
FAKE = jnp.array([-0.5, 1.5])
sig = lambda x: 1 / (1 + np.exp(-np.asarray(x, np.float64)))


def test_bce_family_matches_the_textbook_formula():
    r, f = sig(REAL), sig(FAKE)
    d_ref = -np.mean(np.log(r)) - np.mean(np.log(1 - f))
    for name in ("minimax", "ns"):
        np.testing.assert_allclose(gan.get(name)[0](REAL, FAKE), d_ref, rtol=1e-6)
    np.testing.assert_allclose(gan.get("minimax")[1](FAKE), np.mean(np.log(1 - f)), rtol=1e-6)
    np.testing.assert_allclose(gan.get("ns")[1](FAKE), -np.mean(np.log(f)), rtol=1e-6)
    smoothed = gan.get("ns", label_smoothing=0.1)[0](REAL, FAKE)
    ref = -np.mean(0.9 * np.log(r) + 0.1 * np.log(1 - r)) - np.mean(np.log(1 - f))
    np.testing.assert_allclose(smoothed, ref, rtol=1e-6)


def test_hand_computed_values():
    # lsgan D: 0.5*(mean([1, 4, .25]) + mean([.25, 2.25])) = 0.5*(1.75 + 1.25)
    np.testing.assert_allclose(gan.get("lsgan")[0](REAL, FAKE), 1.5, rtol=1e-6)
    np.testing.assert_allclose(gan.get("lsgan")[1](FAKE), (2.25 + 0.25) / 2, rtol=1e-6)
    np.testing.assert_allclose(gan.get("wgan")[0](REAL, FAKE), 0.5 - 0.5, atol=1e-7)
    np.testing.assert_allclose(gan.get("wgan")[1](FAKE), -0.5, rtol=1e-6)
    # hinge D: mean(relu(1 - [2, -1, .5])) + mean(relu(1 + [-.5, 1.5])) = (0+2+.5)/3 + (.5+2.5)/2
    np.testing.assert_allclose(gan.get("hinge")[0](REAL, FAKE), 2.5 / 3 + 1.5, rtol=1e-6)
    np.testing.assert_allclose(gan.get("hinge")[1](FAKE), -0.5, rtol=1e-6)


@pytest.mark.parametrize("name", ["minimax", "ns"])
def test_bce_is_stable_at_logit_100(name):
    d, g = gan.get(name)
    big = jnp.array([100.0, -100.0])
    np.testing.assert_allclose(d(big, big), (0.0 + 100.0) / 2 + (100.0 + 0.0) / 2, rtol=1e-6)
    for fn, args in ((d, (big, big)), (g, (big,))):
        value, grads = jax.value_and_grad(lambda *a: fn(*a), argnums=tuple(range(len(args))))(*args)
        assert np.isfinite(value) and all(np.all(np.isfinite(x)) for x in grads)


def test_unknown_name_lists_the_valid_ones():
    with pytest.raises(ValueError, match="minimax, ns, lsgan, wgan, hinge"):
        gan.get("wgan-gp")
    with pytest.raises(ValueError, match="BCE"):
        gan.get("hinge", label_smoothing=0.1)


class _Critic(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = nn.tanh(nn.Conv(4, (3, 3), strides=2)(x))
        return nn.Dense(1)(x.reshape(x.shape[0], -1))[:, 0]


def test_gradient_penalty_matches_finite_differences():
    jax.config.update("jax_enable_x64", True)
    try:
        model = _Critic()
        rng = np.random.default_rng(0)
        real, fake = (jnp.asarray(rng.normal(size=(3, 6, 6, 1))) for _ in range(2))
        params = model.init(jax.random.key(0), real)
        critic = lambda x: model.apply(params, x)
        key = jax.random.key(7)
        gp = penalties.gradient_penalty(critic, real, fake, key)
        eps = np.asarray(jax.random.uniform(key, (3, 1, 1, 1), jnp.float64))
        x_hat = eps * np.asarray(real) + (1 - eps) * np.asarray(fake)
        norms = []
        for i in range(3):  # central differences of D(x_hat_i) per input coordinate
            g = np.zeros(36)
            for j in range(36):
                d = np.zeros(36)
                d[j] = 1e-6
                plus = x_hat[i:i + 1] + d.reshape(1, 6, 6, 1)
                minus = x_hat[i:i + 1] - d.reshape(1, 6, 6, 1)
                g[j] = (float(critic(plus)[0]) - float(critic(minus)[0])) / 2e-6
            norms.append(np.linalg.norm(g))
        np.testing.assert_allclose(gp, np.mean((np.array(norms) - 1) ** 2), rtol=1e-6)
        r1 = penalties.r1_penalty(critic, real)
        assert np.isfinite(r1) and r1 > 0
    finally:
        jax.config.update("jax_enable_x64", False)


def test_gradient_penalty_of_a_1_lipschitz_linear_critic_is_zero():
    w = jax.random.normal(jax.random.key(0), (5, 5, 3))
    w = w / jnp.linalg.norm(w)  # |grad| = |w| = 1 everywhere
    critic = lambda x: jnp.sum(x * w, axis=(1, 2, 3))
    real = jax.random.normal(jax.random.key(1), (8, 5, 5, 3))
    fake = jax.random.normal(jax.random.key(2), (8, 5, 5, 3))
    assert float(penalties.gradient_penalty(critic, real, fake, jax.random.key(3))) < 1e-10
    np.testing.assert_allclose(penalties.r1_penalty(critic, real), 1.0, rtol=1e-5)


def test_clipping_bounds_every_weight():
    params = _Critic().init(jax.random.key(0), jnp.ones((1, 6, 6, 1)))
    params = jax.tree.map(lambda p: p * 100, params)
    clipped = penalties.clip_weights(params, 0.01)
    leaves = jax.tree.leaves(clipped)
    assert all(float(jnp.max(jnp.abs(p))) <= 0.01 for p in leaves)
    assert any(float(jnp.max(jnp.abs(p))) == pytest.approx(0.01) for p in leaves)
