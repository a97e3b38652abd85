"""GAN networks, the fast transposed convolution, the GAN step and one run per objective."""

import functools
import importlib

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from genjax import nn as gnn
from genjax import spectral
from genjax import state as gstate
from genjax.losses import gan as gan_losses
from genjax.nn import layers
from genjax.steps import gan as gsteps

from conftest import check_loaded_run, check_resumes_exactly


@pytest.mark.parametrize("k,s,padding,size", [(4, 2, "SAME", 7), (4, 2, "SAME", 14), (4, 1, "SAME", 9),
                                              (3, 2, "VALID", 5), (5, 3, "SAME", 4), (1, 2, "VALID", 4)])
def test_fast_conv_transpose_equals_flax(k, s, padding, size):
    x = jax.random.normal(jax.random.key(0), (3, size, size + 1, 5))
    stock = nn.ConvTranspose(6, (k, k), strides=(s, s), padding=padding)
    fast = layers.ConvTranspose(6, (k, k), strides=(s, s), padding=padding)
    params = jax.jit(stock.init)(jax.random.key(1), x)  # jitted: eager Flax compiles op by op
    fast_params = jax.jit(fast.init)(jax.random.key(1), x)
    chex.assert_trees_all_equal(params, fast_params)  # same tree, shapes and initial values
    np.testing.assert_allclose(jax.jit(fast.apply)(params, x), jax.jit(stock.apply)(params, x),
                               atol=1e-5, rtol=1e-5)
    loss = lambda m: lambda p, x: jnp.sum(jnp.sin(m.apply(p, x)))
    g_fast = jax.jit(jax.grad(loss(fast), argnums=(0, 1)))(params, x)
    g_stock = jax.jit(jax.grad(loss(stock), argnums=(0, 1)))(params, x)
    for a, b in zip(jax.tree.leaves(g_fast), jax.tree.leaves(g_stock)):
        np.testing.assert_allclose(a, b, atol=1e-4, rtol=1e-5)


@pytest.mark.parametrize("k,s,padding,size", [(4, 2, "SAME", 28), (3, 2, "VALID", 9),
                                              (5, 3, "SAME", 10), (4, 2, ((2, 0), (1, 3)), 7)])
def test_fast_strided_conv_equals_flax_to_second_order(k, s, padding, size):
    """Values, gradients and the gradient of an input-gradient penalty (WGAN-GP's double
    backward, which goes through the custom sub-pixel input gradient) match Flax's Conv."""
    x = jax.random.normal(jax.random.key(0), (3, size, size + 1, 4))
    stock = nn.Conv(5, (k, k), strides=(s, s), padding=padding)
    fast = layers.Conv(5, (k, k), strides=(s, s), padding=padding)
    params = jax.jit(stock.init)(jax.random.key(1), x)
    chex.assert_trees_all_equal(params, jax.jit(fast.init)(jax.random.key(1), x))
    np.testing.assert_allclose(jax.jit(fast.apply)(params, x), jax.jit(stock.apply)(params, x),
                               atol=1e-5, rtol=1e-5)
    score = lambda m: lambda p, x: jnp.sum(jnp.tanh(m.apply(p, x)) ** 2)

    def penalty(m):
        return lambda p, x: jnp.sum(jax.grad(score(m), argnums=1)(p, x) ** 2) + score(m)(p, x)

    for f in (score, penalty):
        g_fast = jax.jit(jax.grad(f(fast), argnums=(0, 1)))(params, x)
        g_stock = jax.jit(jax.grad(f(stock), argnums=(0, 1)))(params, x)
        for a, b in zip(jax.tree.leaves(g_fast), jax.tree.leaves(g_stock)):
            np.testing.assert_allclose(a, b, atol=1e-5 * float(jnp.max(jnp.abs(b))), rtol=1e-5)


def test_conv_initialises_exactly_like_flax():
    x = jnp.ones((1, 8, 8, 3))
    chex.assert_trees_all_equal(layers.Conv(5, (3, 3)).init(jax.random.key(0), x),
                                nn.Conv(5, (3, 3)).init(jax.random.key(0), x))


def test_generators_with_fast_and_stock_layers_share_checkpoints():
    z = jax.random.normal(jax.random.key(0), (4, 100))
    fast, stock = gnn.ConvGenerator(), gnn.ConvGenerator(fast=False)
    init = lambda m: jax.jit(functools.partial(m.init, train=False))
    apply = lambda m: jax.jit(functools.partial(m.apply, train=False))
    variables = init(stock)(jax.random.key(1), z)
    chex.assert_trees_all_equal_shapes(variables, init(fast)(jax.random.key(1), z))
    np.testing.assert_allclose(apply(fast)(variables, z), apply(stock)(variables, z), atol=1e-5)


@pytest.mark.parametrize("gen,disc,shape", [
    (gnn.MLPGenerator(), gnn.MLPDiscriminator(), (28, 28, 1)),
    (gnn.ConvGenerator(), gnn.ConvDiscriminator(), (28, 28, 1)),
    (gnn.DCGANGenerator((32, 32, 3), base=8), gnn.DCGANDiscriminator(8, 3), (32, 32, 3)),
    (gnn.DCGANGenerator((64, 64, 3), base=8), gnn.DCGANDiscriminator(8, 4, batchnorm=False), (64, 64, 3)),
    (gnn.SNGANGenerator((32, 32, 3), base=8), gnn.SNGANDiscriminator((8, 16, 32)), (32, 32, 3)),
])
def test_network_shapes(gen, disc, shape):
    z = jnp.ones((2, 100))
    g_vars = jax.jit(functools.partial(gen.init, train=False))(jax.random.key(0), z)
    images = jax.jit(functools.partial(gen.apply, train=False))(g_vars, z)
    assert images.shape == (2, *shape) and float(jnp.max(jnp.abs(images))) <= 1.0
    d_vars = jax.jit(functools.partial(disc.init, train=False))(jax.random.key(1), images)
    assert jax.jit(functools.partial(disc.apply, train=False))(d_vars, images).shape == (2,)


def test_dcgan_sizes_are_checked():
    with pytest.raises(ValueError, match="4\\*2\\^n or 7\\*2\\^n"):
        gnn.DCGANGenerator((48, 48, 3)).init(jax.random.key(0), jnp.ones((1, 8)), train=False)


def _mlp_state(*, n_critic=1, clip=None, sn=False, ema=None, bn_gen=False, loss="ns",
               **options):
    gen = gnn.ConvGenerator((28, 28, 1)) if bn_gen else gnn.MLPGenerator((28, 28, 1), (32,))
    disc = gnn.MLPDiscriminator((32,))
    g_tx, d_tx = optax.adam(1e-3), optax.adam(1e-3)
    g_vars = jax.jit(functools.partial(gen.init, train=False))(jax.random.key(0), jnp.ones((2, 8)))
    d_vars = jax.jit(functools.partial(disc.init, train=False))(jax.random.key(1),
                                                                jnp.ones((2, 28, 28, 1)))
    extra = {"spectral": spectral.init(d_vars["params"], jax.random.key(2)) if sn else {}}
    if ema:
        extra["ema"] = g_vars["params"]
    state = gstate.create(jax.random.key(3), {
        "gen": gstate.create_net(g_vars["params"], g_tx, g_vars.get("batch_stats")),
        "disc": gstate.create_net(d_vars["params"], d_tx)}, extra)
    step = gsteps.make_gan_step(gen, disc, g_tx, d_tx, latent_dim=8, loss=loss, n_critic=n_critic,
                                clip_value=clip, spectral_norm=sn, ema_decay=ema, **options)
    batch = {"image": jax.random.uniform(jax.random.key(4), (16 * n_critic, 28, 28, 1), minval=-1)}
    return state, step, batch


def test_n_critic_updates_the_discriminator_n_times_per_step():
    chex.clear_trace_counter()
    state, step, batch = _mlp_state(n_critic=3)
    step = jax.jit(chex.assert_max_traces(step, n=1))
    for _ in range(2):
        state, metrics = step(state, batch)
    assert int(state.nets["disc"].opt_state[0].count) == 6
    assert int(state.nets["gen"].opt_state[0].count) == 2
    assert {"disc/loss", "disc/real_score", "disc/fake_score", "gen/loss"} <= set(metrics)


def test_clipping_ema_and_spectral_state():
    state, step, batch = _mlp_state(clip=0.01, sn=True, ema=0.9)
    new, _ = jax.jit(step)(state, batch)
    assert max(float(jnp.max(jnp.abs(p))) for p in jax.tree.leaves(new.nets["disc"].params)) <= 0.01
    expected = jax.tree.map(lambda e, p: 0.9 * e + 0.1 * p, state.extra["ema"], new.nets["gen"].params)
    chex.assert_trees_all_close(new.extra["ema"], expected, rtol=1e-6, atol=1e-9)
    assert gsteps.generator_params(new) is new.extra["ema"]
    moved = [not np.allclose(new.extra["spectral"][k], state.extra["spectral"][k])
             for k in state.extra["spectral"]]
    assert any(moved)


def _dots_with_operand(jaxpr, shape) -> int:
    """dot_general equations, through nested calls, with an operand of ``shape``."""
    n = 0
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "dot_general":
            n += any(tuple(v.aval.shape) == shape for v in eqn.invars)
        for param in eqn.params.values():
            for sub in param if isinstance(param, (list, tuple)) else [param]:
                sub = getattr(sub, "jaxpr", sub)
                if hasattr(sub, "eqns"):
                    n += _dots_with_operand(sub, shape)
    return n


def test_shared_update_runs_the_generator_forward_once_with_pytorch_semantics():
    """``update="shared"``: one generator forward per step (read from the jaxpr: the first
    layer's kernel [8, 32] enters 2 dots in the plain step, 1 here); the critic update
    equals the plain step's (same fakes, one joint critic call), and the generator's
    update equals a direct ``jax.grad`` of g_loss(D'(G(z))) through the same z against
    the updated critic D'."""
    (state, plain, batch), (_, shared, _) = _mlp_state(bn_gen=False), _mlp_state(update="shared")
    forwards = {name: _dots_with_operand(jax.make_jaxpr(f)(state, batch).jaxpr, (8, 32))
                for name, f in (("plain", plain), ("shared", shared))}
    assert forwards == {"plain": 2, "shared": 1}
    new, metrics = jax.jit(shared)(state, batch)
    ref, _ = jax.jit(plain)(state, batch)
    chex.assert_trees_all_close(new.nets["disc"], ref.nets["disc"], rtol=1e-6, atol=1e-7)

    spec = gsteps.GANSpec(gnn.MLPGenerator((28, 28, 1), (32,)), gnn.MLPDiscriminator((32,)),
                          optax.adam(1e-3), optax.adam(1e-3), 8, *gan_losses.get("ns"))
    key = jax.random.split(jax.random.split(gstate.step_key(state))[0], 1)[0]
    fake_key = jax.random.split(key)[0]
    gen = state.nets["gen"]

    def g_loss(params):  # differentiates the generator's forward itself
        fake, _, _ = gsteps.draw_fakes(spec, params, gen, fake_key, 16, None, None)
        return gsteps.generator_loss(spec.critic(new.nets["disc"].params, {}, None), {}, fake,
                                     g_loss=spec.g_loss)[0]

    loss, grads = jax.jit(jax.value_and_grad(g_loss))(gen.params)
    updates, _ = spec.g_tx.update(grads, gen.opt_state, gen.params)
    chex.assert_trees_all_close(new.nets["gen"].params, optax.apply_updates(gen.params, updates),
                                rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(metrics["gen/loss"], loss, rtol=1e-6)


@pytest.mark.parametrize("update", ["shared", "simultaneous"])
def test_one_pass_updates_need_one_critic_update_and_no_unrolling(update):
    with pytest.raises(ValueError, match=f"gan_update='{update}' .* needs n_critic=1 and "
                                         "unroll_steps=0, got n_critic=2"):
        _mlp_state(n_critic=2, update=update)
    with pytest.raises(ValueError, match="Unknown gan_update 'joint'; valid: alternating, "
                                         "shared, simultaneous"):
        _mlp_state(update="joint")


@pytest.mark.parametrize("bn_gen", [False, True])
def test_simultaneous_update_equals_two_tapes_at_the_current_parameters(bn_gen):
    """``update="simultaneous"`` (the TensorFlow DCGAN tutorial's step) against a
    hand-written reference: the fakes G(z) of the critic update's key; D's gradient of
    d_loss(D(real), D(fake)) and G's gradient of g_loss(D(G(z))), each by its own
    ``jax.grad`` at the step's starting parameters (two tapes), both applied by Adam.
    One generator forward in the step's jaxpr; a BatchNorm generator's statistics
    advance once."""
    state, step, batch = _mlp_state(bn_gen=bn_gen, update="simultaneous")
    new, metrics = jax.jit(step)(state, batch)
    gen_module = gnn.ConvGenerator((28, 28, 1)) if bn_gen else gnn.MLPGenerator((28, 28, 1), (32,))
    spec = gsteps.GANSpec(gen_module, gnn.MLPDiscriminator((32,)), optax.adam(1e-3),
                          optax.adam(1e-3), 8, *gan_losses.get("ns"))
    d_loss, g_loss = gan_losses.get("ns")
    critic_key = jax.random.split(jax.random.split(gstate.step_key(state))[0], 1)[0]
    fake_key = jax.random.split(critic_key)[0]
    gen, disc = state.nets["gen"], state.nets["disc"]
    score = lambda p, x: spec.discriminator.apply({"params": p}, x, train=True)
    fakes = lambda g: gsteps.draw_fakes(spec, g, gen, fake_key, 16, None, None)
    real = batch["image"]

    def d_objective(p):
        return d_loss(score(p, real), score(p, jax.lax.stop_gradient(fakes(gen.params)[0])))

    def g_objective(g):
        return g_loss(score(disc.params, fakes(g)[0]))

    d_grads = jax.jit(jax.grad(d_objective))(disc.params)
    g_value, g_grads = jax.jit(jax.value_and_grad(g_objective))(gen.params)
    for net, grads, new_net in ((disc, d_grads, new.nets["disc"]), (gen, g_grads, new.nets["gen"])):
        updates, _ = optax.adam(1e-3).update(grads, net.opt_state, net.params)
        chex.assert_trees_all_close(new_net.params, optax.apply_updates(net.params, updates),
                                    rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(metrics["gen/loss"], g_value, rtol=1e-6)
    np.testing.assert_allclose(metrics["disc/loss"], d_objective(disc.params), rtol=1e-6)
    if bn_gen:
        chex.assert_trees_all_close(new.nets["gen"].batch_stats, fakes(gen.params)[2],
                                    rtol=1e-5, atol=1e-8)
    else:
        assert _dots_with_operand(jax.make_jaxpr(step)(state, batch).jaxpr, (8, 32)) == 1


@pytest.mark.parametrize("conditional", [False, True])
def test_joint_critic_call_scores_like_two_calls(conditional):
    """One critic call on [real; fake] gives the loss and gradients of two calls (an MLP
    critic scores each example on its own), with one first-layer forward, not two; a
    critic with BatchNorm is refused."""
    disc = gnn.MLPDiscriminator((32,), head=gnn.Head(num_classes=3 if conditional else 0))
    real, fake = (jax.random.uniform(jax.random.key(i), (6, 28, 28, 1)) for i in (0, 1))
    labels = jnp.array([0, 1, 2, 0, 1, 2]) if conditional else None
    params = jax.jit(functools.partial(disc.init, train=False))(jax.random.key(2), real, labels)
    critic = lambda p: lambda x, y, stats: (disc.apply(p, x, y, train=True), stats)
    d_loss, _ = gan_losses.get("ns")

    def loss(p, joint):
        return gsteps.critic_loss(critic(p), {}, real, fake, jax.random.key(3), d_loss=d_loss,
                                  real_labels=labels, fake_labels=labels, gp_weight=1.0,
                                  joint=joint)[0]

    for_joint, for_two = (jax.jit(jax.value_and_grad(loss), static_argnums=1)(params, j)
                          for j in (True, False))
    chex.assert_trees_all_close(for_joint, for_two, rtol=1e-5, atol=1e-6)
    first_layer = (784, 32)
    count = lambda j: _dots_with_operand(jax.make_jaxpr(lambda p: loss(p, j))(params).jaxpr,
                                         first_layer)
    assert count(False) - count(True) == 1  # the gradient penalty's own calls are the rest
    bn_critic = lambda x, y, stats: (jnp.sum(x, (1, 2, 3)), stats)
    with pytest.raises(ValueError, match="BatchNorm"):
        gsteps.critic_loss(bn_critic, {"BatchNorm_0": {"mean": jnp.zeros(3)}}, real, fake,
                           jax.random.key(3), d_loss=d_loss, joint=True)


def test_pacgan_packs_samples_side_by_side():
    """Consecutive groups of m samples become one critic input, features on the last axis."""
    points = jnp.arange(12.0).reshape(6, 2)
    np.testing.assert_array_equal(gsteps.pack_samples(points, 3),
                                  [[0, 1, 2, 3, 4, 5], [6, 7, 8, 9, 10, 11]])
    images = jnp.arange(16.0).reshape(4, 2, 2, 1)
    packed = gsteps.pack_samples(images, 2)
    assert packed.shape == (2, 2, 2, 2)
    for pack, member in [(0, 0), (0, 1), (1, 0), (1, 1)]:
        np.testing.assert_array_equal(packed[pack, ..., member], images[2 * pack + member, ..., 0])
    assert gsteps.pack_samples(images, 1) is images
    with pytest.raises(ValueError, match="batch of 4 .* does not divide by 3"):
        gsteps.pack_samples(images, 3)


def test_pacgan_step_scores_packs_of_samples(data_dir):
    """With ``pack = 2`` the discriminator's first layer takes two digits side by side, the
    critic returns one score per pack, the same as the network on packed inputs, and
    the step trains."""
    from genjax.configs import gan_mlp_mnist
    from genjax.tasks import TASKS

    c = gan_mlp_mnist.get_config("test")
    c.pack = 2
    task = TASKS["gan"](c, (28, 28, 1))
    state = jax.jit(task.init)(jax.random.key(0))
    kernel = state.nets["disc"].params["Dense_0"]["kernel"]
    assert kernel.shape[0] == 2 * 784
    disc = gnn.MLPDiscriminator()  # the config's critic: textbook widths, plain head
    spec = gsteps.GANSpec(None, disc, None, None, c.latent_dim, None, None, pack=2)
    x = jax.random.uniform(jax.random.key(1), (6, 28, 28, 1))
    scores, _ = spec.critic(state.nets["disc"].params, {}, None)(x, None, {})
    want = disc.apply({"params": state.nets["disc"].params}, gsteps.pack_samples(x, 2), None,
                      train=True)
    assert scores.shape[0] == 3
    np.testing.assert_allclose(scores, want, rtol=1e-6)
    batch = {"image": jax.random.uniform(jax.random.key(2), (c.batch_size, 28, 28, 1), minval=-1)}
    new, metrics = jax.jit(task.train_step)(state, batch)
    assert all(np.isfinite(float(v)) for v in metrics.values())
    assert not np.allclose(new.nets["disc"].params["Dense_0"]["kernel"], kernel)


def test_batchnorm_statistics_are_returned_by_the_step():
    state, step, batch = _mlp_state(bn_gen=True)
    new, _ = jax.jit(step)(state, batch)
    before, after = state.nets["gen"].batch_stats, new.nets["gen"].batch_stats
    assert jax.tree.structure(before) == jax.tree.structure(after)
    assert not all(np.allclose(a, b) for a, b in zip(jax.tree.leaves(before), jax.tree.leaves(after)))


def test_unknown_loss_fails_before_tracing():
    with pytest.raises(ValueError, match="valid names"):
        _mlp_state(loss="wgan_gp")


CONFIGS = ["dcgan_mnist"] + [  # the MLP GAN's run without resume: tests/test_evaluation.py
    pytest.param(name, marks=pytest.mark.slow(seconds=30))  # 20-60 s each on 2 cores
    for name in ("gan_mlp_mnist", "lsgan_mnist", "dcgan_cifar10", "wgan_mnist", "wgan_gp_mnist",
                 "sngan_mnist", "sngan_cifar10", "cdcgan_mnist", "progan_mnist", "fast_gan_mnist")]


@pytest.mark.parametrize("name", CONFIGS)
def test_each_objective_trains_and_resumes_exactly(name, data_dir, tmp_path, capsys):
    """Every GAN config trains 4 steps through the real loop (evaluation and grids
    included); with its step-4 checkpoint removed, the same run resumes from step 2 and
    ends bitwise equal. (Kills at any moment: the chaos test in tests/test_loop.py.)"""
    c = importlib.import_module(f"genjax.configs.{name}").get_config("test")
    c.data_dir, c.num_steps, c.checkpoint_every = data_dir, 4, 2
    c.dataset = "mnist5k"  # the CIFAR configs' networks, offline at 28x28
    c.eval_samples = c.eval_batch_size = 100
    final = check_resumes_exactly(c, tmp_path, capsys)
    assert (tmp_path / "samples.png").exists()
    assert np.isfinite(final["test/domain_fid"]), final
    if name == "gan_mlp_mnist":  # one config is enough for the GANs' load, refusal and export
        check_loaded_run(tmp_path, final, None, tmp_path=tmp_path)


class _LabelImage(nn.Module):
    """A conditional generator whose image is its label everywhere (z is ignored)."""

    @nn.compact
    def __call__(self, z, labels, train=False):
        b = self.param("b", nn.initializers.zeros, (1,))
        image = labels.astype(jnp.float32)[:, None, None, None] + b + 0.0 * z[:, :1, None, None]
        return jnp.broadcast_to(image, (z.shape[0], 4, 4, 1))


class _DistanceToLabel(nn.Module):
    """A conditional critic: the squared distance of an image from its label's constant
    image, so its input gradient is zero exactly on images of the scored label."""

    @nn.compact
    def __call__(self, x, labels, train=False):
        w = self.param("w", nn.initializers.ones, (1,))
        return w * jnp.sum((x - labels.astype(jnp.float32)[:, None, None, None]) ** 2, (1, 2, 3))


def test_conditional_gradient_penalty_interpolates_within_a_class():
    """With a penalty, the critic's fakes are drawn with the real labels: every interpolate
    of a real image of class c and a fake is an image of class c, scored as class c."""
    gen, disc = _LabelImage(), _DistanceToLabel()
    tx = optax.sgd(0.0)
    z, labels = jnp.zeros((2, 3)), jnp.zeros((2,), jnp.int32)
    state = gstate.create(jax.random.key(0), {
        "gen": gstate.create_net(gen.init(jax.random.key(1), z, labels)["params"], tx),
        "disc": gstate.create_net(disc.init(jax.random.key(2), jnp.zeros((2, 4, 4, 1)),
                                            labels)["params"], tx)}, {"spectral": {}})
    step = gsteps.make_gan_step(gen, disc, tx, tx, latent_dim=3, loss="wgan", gp_weight=10.0,
                                num_classes=10)
    y = jnp.arange(16, dtype=jnp.int32) % 10
    batch = {"image": jnp.broadcast_to(y.astype(jnp.float32)[:, None, None, None], (16, 4, 4, 1)),
             "label": y}
    _, metrics = jax.jit(step)(state, batch)
    # gradient zero at every interpolate: the norm is sqrt(1e-12), the penalty (1e-6 - 1)^2
    np.testing.assert_allclose(metrics["disc/gradient_penalty"], (1e-6 - 1.0) ** 2, rtol=1e-6)
