"""Techniques against mode collapse: minibatch features, unrolling, conditioning,
progressive growing, the 2-D mixtures and their mode metrics."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from genjax import nn as gnn
from genjax import state as gstate
from genjax.losses import gan as gan_losses
from genjax.metrics.modes import mode_metrics
from genjax.steps import gan as gsteps


def _init_apply(module, *args, **kw):
    variables = jax.jit(functools.partial(module.init, **kw))(jax.random.key(0), *args)
    return variables, jax.jit(functools.partial(module.apply, **kw))


# ---- minibatch features -------------------------------------------------------------

def test_minibatch_discrimination_matches_its_definition():
    x = jax.random.normal(jax.random.key(1), (6, 7))
    layer = gnn.MinibatchDiscrimination(num_kernels=4, kernel_dim=3)
    variables, apply = _init_apply(layer, x)
    out = np.asarray(apply(variables, x))
    m = np.asarray(x @ variables["params"]["T"]).reshape(6, 4, 3)
    l1 = np.abs(m[:, None] - m[None]).sum(-1)  # [B, B, kernels], Salimans et al. eq. (4)
    expected = np.exp(-l1).sum(1) - 1.0  # o(x_i) = sum over j != i
    assert out.shape == (6, 7 + 4)
    np.testing.assert_allclose(out[:, :7], x)
    np.testing.assert_allclose(out[:, 7:], expected, rtol=1e-5, atol=1e-6)


def test_minibatch_features_tell_identical_from_diverse_batches():
    same = jnp.tile(jax.random.normal(jax.random.key(2), (1, 5)), (8, 1))
    diverse = 3.0 * jax.random.normal(jax.random.key(3), (8, 5))
    variables, apply = _init_apply(gnn.MinibatchDiscrimination(10, 3), same)
    # Identical rows: every other example at distance 0, exp(0) = 1 from each of the 7.
    np.testing.assert_allclose(apply(variables, same)[:, 5:], 7.0, rtol=1e-6)
    assert float(jnp.max(apply(variables, diverse)[:, 5:])) < 6.0
    # The standard deviation: about 0 (sqrt(eps)) for identical rows, the closed form else.
    np.testing.assert_allclose(gnn.minibatch_stddev(same)[:, -1], 1e-4, rtol=1e-3)
    groups = np.asarray(diverse).reshape(2, 4, 5)
    expected = np.sqrt(groups.var(axis=1) + 1e-8).mean(axis=1).repeat(4)
    np.testing.assert_allclose(gnn.minibatch_stddev(diverse)[:, -1], expected, rtol=1e-5)
    maps = gnn.minibatch_stddev(jnp.ones((4, 3, 3, 2)), group_size=2)
    assert maps.shape == (4, 3, 3, 3)
    with pytest.raises(ValueError, match="batch 6 is not a multiple of the group size 4"):
        gnn.minibatch_stddev(jnp.ones((6, 2)))


def test_minibatch_discrimination_across_replicas_equals_one_device():
    # vmap with an axis name runs the collective exactly as pmap would over 4 replicas.
    x = jax.random.normal(jax.random.key(4), (8, 5))
    layer = gnn.MinibatchDiscrimination(3, 2)
    variables = layer.init(jax.random.key(0), x)
    mapped = gnn.MinibatchDiscrimination(3, 2, axis_name="d")
    split = jax.vmap(lambda xs: mapped.apply(variables, xs), axis_name="d")(x.reshape(4, 2, 5))
    np.testing.assert_allclose(split.reshape(8, -1), layer.apply(variables, x), rtol=1e-5)


@pytest.mark.parametrize("disc", [gnn.MLPDiscriminator((16,)), gnn.ConvDiscriminator(),
                                  gnn.DCGANDiscriminator(8, 3)])
@pytest.mark.parametrize("minibatch", ["stddev", "discrimination"])
def test_every_discriminator_takes_minibatch_features(disc, minibatch):
    x = jax.random.uniform(jax.random.key(5), (4, 28, 28, 1))
    disc = disc.clone(head=gnn.Head(minibatch, kernels=(8, 3)))
    variables, apply = _init_apply(disc, x, train=False)
    assert apply(variables, x).shape == (4,)
    assert ("MinibatchDiscrimination_0" in variables["params"]["head"]) == (
        minibatch == "discrimination")


# ---- conditioning -------------------------------------------------------------------

def test_conditional_generator_is_the_generator_on_noise_and_label_embedding():
    gen = gnn.Conditional(gnn.MLPGenerator((4, 4, 1), (8,)), num_classes=3, embed_dim=2)
    z, labels = jax.random.normal(jax.random.key(6), (3, 5)), jnp.array([0, 1, 2])
    variables, apply = _init_apply(gen, z, labels, train=False)
    table = variables["params"]["Embed_0"]["embedding"]
    base = {"params": variables["params"]["generator"]}
    expected = gen.generator.apply(base, jnp.concatenate([z, table[labels]], -1), train=False)
    # the same function; the jitted and op-by-op programs may round differently (1 ulp)
    np.testing.assert_allclose(apply(variables, z, labels), expected, rtol=1e-6, atol=1e-7)
    same_z = jnp.tile(z[:1], (3, 1))
    out = apply(variables, same_z, labels)
    assert not np.allclose(out[0], out[1]) and not np.allclose(out[1], out[2])


@pytest.mark.parametrize("conditioning", ["projection", "concat"])
def test_conditional_discriminator_uses_the_label(conditioning):
    disc = gnn.ConvDiscriminator(gnn.Head(num_classes=10, conditioning=conditioning))
    x = jnp.tile(jax.random.uniform(jax.random.key(7), (1, 28, 28, 1)), (10, 1, 1, 1))
    variables, apply = _init_apply(disc, x, jnp.arange(10), train=False)
    scores = apply(variables, x, jnp.arange(10))
    assert len(np.unique(np.round(np.asarray(scores), 6))) == 10  # same image, 10 labels
    with pytest.raises(ValueError, match="class-conditional: pass labels"):
        disc.apply(variables, x, train=False)
    if conditioning == "projection":  # score = unconditional score + <embed(y), features>
        params = jax.tree.map(lambda a: a, variables["params"])
        params["head"]["Embed_0"]["embedding"] = jnp.zeros_like(params["head"]["Embed_0"]["embedding"])
        plain = {"params": {k: v for k, v in params.items()}}
        plain["params"]["head"] = {"Dense_0": params["head"]["Dense_0"]}
        np.testing.assert_allclose(apply({"params": params}, x, jnp.arange(10)),
                                   gnn.ConvDiscriminator().apply(plain, x, train=False), rtol=1e-6)


# ---- unrolled GAN -------------------------------------------------------------------

def _unrolled_setup(unroll_steps, d_lr=0.5):
    """A GAN whose generator ignores its noise (first kernel zero), G and D SGD, so the
    generator's loss is a deterministic function of its parameters."""
    gen, disc = gnn.MLPGenerator((3,), (8,)), gnn.MLPDiscriminator((8,))
    g_tx, d_tx = optax.sgd(1.0), optax.sgd(d_lr)
    g_vars = gen.init(jax.random.key(0), jnp.zeros((1, 4)))
    g_vars["params"]["Dense_0"]["kernel"] = jnp.zeros_like(g_vars["params"]["Dense_0"]["kernel"])
    g_vars["params"]["Dense_0"]["bias"] = jax.random.normal(jax.random.key(4), (8,))
    d_vars = disc.init(jax.random.key(1), jnp.zeros((1, 3)))
    state = gstate.create(jax.random.key(2), {"gen": gstate.create_net(g_vars["params"], g_tx),
                                              "disc": gstate.create_net(d_vars["params"], d_tx)},
                          {"spectral": {}})
    step = gsteps.make_gan_step(gen, disc, g_tx, d_tx, latent_dim=4, unroll_steps=unroll_steps)
    batch = {"image": jax.random.normal(jax.random.key(3), (16, 3)),
             "label": jnp.zeros(16, jnp.int32)}
    return gen, disc, state, jax.jit(step), batch


def test_unrolled_zero_is_the_plain_gan_step():
    _, _, state, plain, batch = _unrolled_setup(0)
    gen, disc, _, _, _ = _unrolled_setup(0)
    default = jax.jit(gsteps.make_gan_step(gen, disc, optax.sgd(1.0), optax.sgd(0.5), latent_dim=4))
    chex.assert_trees_all_equal(plain(state, batch), default(state, batch))


@pytest.mark.parametrize("k", [1, 3])
def test_unrolled_gradient_flows_through_the_discriminator_updates(k):
    gen, disc, state, step, batch = _unrolled_setup(k)
    new, _ = step(state, batch)
    d_loss_fn, g_loss_fn = gan_losses.get("ns")
    z = jnp.zeros((16, 4))  # any noise: the generator ignores it
    d_after = new.nets["disc"].params  # the real update is made first, then unrolled from it

    def reference(g_params, unrolled=True):
        fake = gen.apply({"params": g_params}, z)
        d = d_after
        for _ in range(k if unrolled else 0):
            grad = jax.grad(lambda p: d_loss_fn(disc.apply({"params": p}, batch["image"]),
                                                disc.apply({"params": p}, fake)))(d)
            d = jax.tree.map(lambda p, g: p - 0.5 * g, d, grad)
        return g_loss_fn(disc.apply({"params": d}, fake))

    theta = state.nets["gen"].params
    got = jax.tree.map(jnp.subtract, theta, new.nets["gen"].params)  # SGD(1): the gradient
    want = jax.grad(reference)(theta)
    for g in (got, want):  # the first kernel's gradient is the only one that depends on z
        g["Dense_0"].pop("kernel")
    chex.assert_trees_all_close(got, want, rtol=1e-4, atol=1e-6)
    plain = jax.grad(functools.partial(reference, unrolled=False))(theta)
    plain["Dense_0"].pop("kernel")
    assert not np.allclose(got["Dense_1"]["kernel"], plain["Dense_1"]["kernel"], rtol=1e-2)


# ---- progressive growing ------------------------------------------------------------

def test_growth_schedule_fades_then_holds():
    at = gnn.growth_schedule(3, fade_steps=4, stable_steps=2)
    got = [(int(g["stage"]), float(g["alpha"])) for g in map(at, jnp.arange(16))]
    assert got == [(0, 1.0), (0, 1.0), (1, 0.0), (1, 0.25), (1, 0.5), (1, 0.75), (1, 1.0),
                   (1, 1.0), (2, 0.0), (2, 0.25), (2, 0.5), (2, 0.75), (2, 1.0), (2, 1.0),
                   (2, 1.0), (2, 1.0)]


def _grown(stage, alpha):
    return {"stage": jnp.int32(stage), "alpha": jnp.float32(alpha)}


def test_fade_in_ends_are_the_lower_and_higher_resolution_paths():
    widths = (8, 8, 4, 4)
    gen, disc = gnn.ProGenerator((32, 32, 1), widths), gnn.ProDiscriminator(widths)
    z = jax.random.normal(jax.random.key(8), (4, 6))
    x = jax.random.uniform(jax.random.key(9), (4, 32, 32, 1))
    g_vars, g = _init_apply(gen, z, _grown(0, 1.0))
    d_vars, d = _init_apply(disc, x, None, _grown(0, 1.0))

    def without(variables, name):  # the same network with one layer's weights changed
        params = dict(variables["params"])
        params[name] = jax.tree.map(lambda a: a + 1.0, params[name])
        return {"params": params}

    for s in range(1, len(widths)):
        # alpha 0: exactly the previous stage (images upsampled / downsampled)
        np.testing.assert_array_equal(g(g_vars, z, _grown(s, 0.0)), g(g_vars, z, _grown(s - 1, 1.0)))
        np.testing.assert_allclose(d(d_vars, x, None, _grown(s, 0.0)),
                                   d(d_vars, x, None, _grown(s - 1, 1.0)), rtol=1e-5, atol=1e-6)
        # alpha 1: the new path alone; the previous resolution's RGB layers play no part
        np.testing.assert_array_equal(g(g_vars, z, _grown(s, 1.0)),
                                      g(without(g_vars, f"to_rgb_{s - 1}"), z, _grown(s, 1.0)))
        np.testing.assert_array_equal(d(d_vars, x, None, _grown(s, 1.0)),
                                      d(without(d_vars, f"from_rgb_{s - 1}"), x, None, _grown(s, 1.0)))
        mid = g(g_vars, z, _grown(s, 0.5))
        assert not np.allclose(mid, g(g_vars, z, _grown(s, 1.0)))
    out = g(g_vars, z, _grown(1, 1.0))
    assert out.shape == (4, 32, 32, 1)  # 8x8 upsampled: constant 4x4 blocks
    np.testing.assert_array_equal(out[:, ::4, ::4], out[:, 3::4, 3::4])


# ---- the 2-D mixtures ---------------------------------------------------------------

def test_mode_metrics_closed_forms():
    centers = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    at_two = np.concatenate([np.zeros((60, 2)), np.full((40, 2), [10.0, 0.0])])
    assert mode_metrics(at_two, centers, 0.1) == {"modes_covered": 2.0, "high_quality": 1.0,
                                                  "modes_reached": 2.0}
    off = np.concatenate([at_two[:99], [[0.0, 10.0 + 0.31]]])  # 1 sample 3.1 std from mode 3
    assert mode_metrics(off, centers, 0.1) == {"modes_covered": 2.0, "high_quality": 0.99,
                                               "modes_reached": 3.0}
    few = np.concatenate([at_two[:99], [[0.0, 10.0]]])  # exactly 1% on mode 3: covered
    assert mode_metrics(few, centers, 0.1)["modes_covered"] == 3.0
    spread = np.array([[1.0, 1.0], [9.0, 0.0], [1.0, 9.0], [5.0, 4.0]])  # none within 3 std
    assert mode_metrics(spread, centers, 0.1) == {"modes_covered": 0.0, "high_quality": 0.0,
                                                  "modes_reached": 3.0}


@pytest.mark.parametrize("name,modes,std", [("ring8", 8, 0.02), ("grid25", 25, 0.05)])
def test_mixtures_flow_through_the_pipeline(name, modes, std, tmp_path):
    from genjax import data as gdata
    from genjax.data import mixtures

    spec = gdata.DataSpec(f"gaussian_mixtures/{name}", data_dir=str(tmp_path), preprocess="raw")
    batch = next(gdata.train_iterator(spec, "train", global_batch_size=2000))
    points, labels = batch["image"], batch["label"]
    assert points.shape == (2000, 2) and points.dtype == np.float32
    mu = mixtures.centers(name)
    assert len(mu) == modes and len(np.unique(labels)) == modes
    offsets = points - mu[labels]
    np.testing.assert_allclose(offsets.std(), std, rtol=0.1)
    assert mode_metrics(points, mu, std) == {"modes_covered": float(modes), "modes_reached": float(modes),
                                             "high_quality": pytest.approx(0.99, abs=0.01)}


def test_progan_celeba64_config_builds_five_stages():
    from genjax.configs import progan_celeba64
    from genjax.tasks import gan

    c = progan_celeba64.get_config()
    assert (c.dataset, c.image_size, c.generator, c.discriminator) == ("celeb_a", 64, "progan", "progan")
    state = jax.eval_shape(gan.build(c, (64, 64, 3)).init, jax.random.key(0))
    g = state.nets["gen"].params
    assert g["to_rgb_4"]["kernel"].shape == (1, 1, 64, 3)  # the 64x64 output layer
    assert [g[f"blocks_{i}"]["Conv_0"]["kernel"].shape[-1] for i in range(4)] == [256, 256, 128, 64]
    assert state.extra["growth"]["alpha"].dtype == jnp.float32  # the fade-in is state



def test_points_samples_are_not_clipped_to_the_image_range():
    """2-D points (``preprocess=raw``) leave the sampler as the generator drew them: the
    [0, 1] clipping meant for images would pile the mixtures' samples onto the corner of
    the unit square, and the mode-collapse benchmark would score that pile."""
    from genjax.configs import gan_mlp_mnist
    from genjax import rng
    from genjax.tasks import gan

    c = gan_mlp_mnist.get_config()
    c.dataset, c.preprocess, c.latent_dim = "gaussian_mixtures/grid25", "raw", 16
    c.generator = c.discriminator = "points"
    task = gan.build(c, (2,))
    state = jax.jit(task.init)(rng.stream(0, "init"))
    samples = np.concatenate(list(task.sample(state, rng.stream(0, "eval_samples"), 500)))
    z = jax.random.normal(jax.random.fold_in(rng.stream(0, "eval_samples"), 0),
                          (c.eval_batch_size, c.latent_dim))
    drawn = gsteps.generate(gan.build_networks(c, (2,))[0], state, z, None)
    assert (samples < 0).mean() > 0.2  # a linear output at init: about half negative
    np.testing.assert_allclose(samples[:c.eval_batch_size], np.asarray(drawn), rtol=1e-5,
                               atol=1e-6)
