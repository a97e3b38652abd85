"""Randomness hygiene: every key is consumed once, and named streams never coincide.

A key that is both drawn from and split or folded into children makes the children's
bits functions of the draw's bits (with partitionable threefry they overlap); a key
drawn from twice gives two "independent" draws the same bits. The check below reads
the traced program (jaxpr), follows keys into nested calls, and records which random
operations consume each key.
"""

import collections

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from genjax import rng

RANDOM_OPS = {"random_bits", "random_split", "random_fold_in"}


def _is_key(var) -> bool:
    aval = getattr(var, "aval", None)
    return aval is not None and jax.dtypes.issubdtype(getattr(aval, "dtype", None),
                                                      jax.dtypes.prng_key)


def _sub_jaxprs(eqn):
    """(inner jaxpr, its invars aligned with eqn.invars or None) for nested calls."""
    for name in ("jaxpr", "call_jaxpr", "fun_jaxpr"):
        sub = eqn.params.get(name)
        sub = getattr(sub, "jaxpr", sub)
        if sub is not None and hasattr(sub, "eqns"):
            yield sub


def key_uses(jaxpr) -> dict:
    """{key var of ``jaxpr``: [random ops consuming it, through nested calls]}."""
    uses = collections.defaultdict(list)
    for eqn in jaxpr.eqns:
        keys = [v for v in eqn.invars if _is_key(v)]
        if not keys:
            continue
        if eqn.primitive.name in RANDOM_OPS:
            for v in keys:
                uses[v].append(eqn.primitive.name)
            continue
        for sub in _sub_jaxprs(eqn):
            inner = key_uses(sub)
            offset = len(sub.invars) - len(eqn.invars)  # pjit: aligned; others: trailing
            for outer, var in zip(eqn.invars, sub.invars[max(offset, 0):]):
                if _is_key(outer):
                    uses[outer].extend(inner.get(var, []))
    return uses


def _reused(ops: list[str]) -> bool:
    """A key is reused when it is drawn from or split more than once, or drawn from or split
    and also folded. Folding one key with many values (as Flax's init does per module) is
    the documented way to derive independent keys."""
    once = ops.count("random_bits") + ops.count("random_split")
    return once > 1 or (once == 1 and "random_fold_in" in ops)


def reused_keys(fn, *args) -> list:
    """Keys in ``fn(*args)`` that random operations consume in conflicting ways."""
    jaxpr = jax.make_jaxpr(fn)(*args).jaxpr
    found = []

    def walk(j):
        for var, ops in key_uses(j).items():
            if _reused(ops):
                found.append((str(var), ops))
        for eqn in j.eqns:
            for sub in _sub_jaxprs(eqn):
                walk(sub)

    walk(jaxpr)
    return found


def test_the_checker_finds_a_key_drawn_from_and_derived_from():
    def bad(key):
        z = jax.random.normal(key, (3,))
        return z, jax.random.normal(jax.random.fold_in(key, 1), (3,))

    def good(key):
        z_key, y_key = jax.random.split(key)
        return jax.random.normal(z_key, (3,)), jax.random.normal(y_key, (3,))

    assert reused_keys(bad, jax.random.key(0))
    assert not reused_keys(good, jax.random.key(0))


def _gan_config(**overrides) -> ml_collections.ConfigDict:
    from genjax.configs import cdcgan_mnist

    c = cdcgan_mnist.get_config("test")
    c.update(overrides)
    return c


@pytest.mark.parametrize("overrides", [
    {},                                                        # conditional: z and labels
    {"unroll_steps": 2, "gp_weight": 10.0, "loss": "wgan"},    # look-ahead and penalty keys
])
def test_gan_step_consumes_each_key_once(overrides):
    from genjax.tasks import gan

    c = _gan_config(generator="mlp", discriminator="mlp", n_critic=2, **overrides)
    task = gan.build(c, (28, 28, 1))
    state = jax.eval_shape(task.init, jax.random.key(0))
    n = task.examples_per_step
    batch = {"image": jnp.zeros((n, 28, 28, 1)), "label": jnp.zeros((n,), jnp.int32)}
    assert not reused_keys(task.train_step, state, batch)
    assert not reused_keys(task.init, jax.random.key(0))


def test_vae_init_and_step_consume_each_key_once():
    from genjax.configs import vae_mnist
    from genjax.tasks import vae

    task = vae.build(vae_mnist.get_config("test"), (28, 28, 1))
    assert not reused_keys(task.init, jax.random.key(0))
    state = jax.eval_shape(task.init, jax.random.key(0))
    batch = {"image": jnp.zeros((8, 28, 28, 1)), "label": jnp.zeros((8,), jnp.int32)}
    assert not reused_keys(task.train_step, state, batch)


def test_diffusion_init_step_sampler_and_bound_consume_each_key_once():
    from genjax.configs import ddpm_mnist_cond
    from genjax.steps import diffusion as dsteps
    from genjax.tasks import diffusion

    c = ddpm_mnist_cond.get_config("test")
    task = diffusion.build(c, (28, 28, 1))
    assert not reused_keys(task.init, jax.random.key(0))
    state = jax.eval_shape(task.init, jax.random.key(0))
    batch = {"image": jnp.zeros((8, 28, 28, 1)), "label": jnp.zeros((8,), jnp.int32)}
    assert not reused_keys(task.train_step, state, batch)
    from genjax.losses import diffusion as D

    s = D.make_schedule("linear", 30)
    apply = lambda p, x, t, labels=None: 0.5 * x
    for name in dsteps.SAMPLERS:
        draw = dsteps.make_sampler(apply, s, sampler=name, steps=5, prediction="eps", trajectory=3)
        assert not reused_keys(lambda k: draw(None, k, (2, 4, 4, 1)), jax.random.key(0)), name
    vlb = dsteps.make_vlb(apply, s, prediction="eps", timesteps=4)
    eval_batch = {"image": jnp.zeros((2, 4, 4, 1)), "mask": jnp.ones(2)}
    assert not reused_keys(lambda k: vlb(None, eval_batch, k), jax.random.key(0))


def test_pixelcnn_init_step_and_samplers_consume_each_key_once():
    from genjax.configs import gated_pixelcnn_cond_mnist, pixelcnn_pp_mnist
    from genjax.tasks import pixelcnn

    for c in (gated_pixelcnn_cond_mnist.get_config("test"), pixelcnn_pp_mnist.get_config("test")):
        c.num_classes = 10
        task = pixelcnn.build(c, (6, 6, 1))
        assert not reused_keys(task.init, jax.random.key(0))
        state = jax.eval_shape(task.init, jax.random.key(0))
        batch = {"image": jnp.zeros((4, 6, 6, 1)), "label": jnp.zeros((4,), jnp.int32)}
        assert not reused_keys(task.train_step, state, batch)
        model = pixelcnn.build_model(c, 1)
        draw = pixelcnn.make_sampler(model, c, (6, 6, 1))
        params = jax.eval_shape(task.init, jax.random.key(0)).nets["model"].params
        params = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), params)
        labels = jnp.zeros((2,), jnp.int32)
        assert not reused_keys(lambda k: draw(params, k, jnp.zeros((2, 6, 6, 1)), labels), jax.random.key(0))


def test_flow_init_step_evaluation_and_sampler_consume_each_key_once():
    from genjax.configs import glow_mnist
    from genjax.nn import flows as F
    from genjax.steps import flows as fsteps
    from genjax.tasks import flows

    c = glow_mnist.get_config("test")
    task = flows.build(c, (4, 4, 1))
    assert not reused_keys(task.init, jax.random.key(0))
    state = jax.eval_shape(task.init, jax.random.key(0))
    batch = {"image": jnp.zeros((4, 4, 4, 1)), "label": jnp.zeros((4,), jnp.int32)}
    assert not reused_keys(task.train_step, state, batch)
    assert not reused_keys(task.data_init, state, batch)
    forward, inverse = F.bijector_fns(flows.build_model(c, (4, 4, 1)))
    params = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), state.nets["model"].params)
    evaluate = fsteps.make_eval(forward, True, draws=3)
    eval_batch = {"image": jnp.zeros((2, 4, 4, 1)), "mask": jnp.ones(2)}
    assert not reused_keys(lambda k: evaluate(params, eval_batch, k), jax.random.key(0))
    draw = fsteps.make_sampler(inverse, (4, 4, 1), 0.7)
    assert not reused_keys(lambda k: draw(params, k, 2), jax.random.key(0))


def test_rbm_init_step_and_estimators_consume_each_key_once():
    from genjax.configs import dbn_mnist, rbm_cd1_mnist, rbm_centered_mnist
    from genjax.metrics import ais as A
    from genjax.tasks import rbm

    for module in (rbm_centered_mnist, dbn_mnist, rbm_cd1_mnist):
        c = module.get_config("test")
        task = rbm.build(c, (4, 4, 1))
        assert not reused_keys(task.init, jax.random.key(0))
        state = jax.eval_shape(task.init, jax.random.key(0))
        batch = {"image": jnp.zeros((16, 4, 4, 1)), "label": jnp.zeros((16,), jnp.int32)}
        assert not reused_keys(task.train_step, state, batch)
        assert not reused_keys(task.data_init, state, batch)
    params = {"W": jnp.zeros((16, 5)), "b": jnp.zeros(16), "c": jnp.zeros(5)}
    schedule = jnp.asarray(A.betas(6))
    assert not reused_keys(lambda k: A.ais_log_z(params, params["b"], schedule, 4, k),
                           jax.random.key(0))
    assert not reused_keys(lambda k: A.reverse_ais_log_likelihood(
        params, params["b"], schedule, jnp.zeros((3, 16)), k), jax.random.key(0))
    assert not reused_keys(lambda k: rbm.draw_samples([params], k, 3, 4), jax.random.key(0))


def test_named_streams_are_distinct_and_stable():
    data = {name: np.asarray(jax.random.key_data(rng.stream(0, name))) for name in rng.STREAMS}
    assert len({d.tobytes() for d in data.values()}) == len(rng.STREAMS)
    # a stream of one seed is not another seed's stream (no seed + offset overlap)
    other = {np.asarray(jax.random.key_data(rng.stream(1, n))).tobytes() for n in rng.STREAMS}
    assert not other & {d.tobytes() for d in data.values()}
    np.testing.assert_array_equal(data["init"], jax.random.key_data(
        jax.random.fold_in(jax.random.key(0), rng.STREAMS["init"])))
    with pytest.raises(ValueError, match="Unknown random stream 'grid'.*sample_grid"):
        rng.stream(0, "grid")
