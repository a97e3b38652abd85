"""Autoregressive models (the PixelCNNs, the PixelRNNs, the Transformer): receptive fields
by differentiation, likelihoods that sum to one by enumeration, the logistic mixture
against a float64 reference, exact sampling (fast samplers against full passes and
against enumeration), and the family end to end."""

import itertools

import chex
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from scipy import special, stats

from genjax.losses import pixelcnn as L
from genjax.nn import pixelcnn as P
from genjax.nn import pixelrnn as R
from genjax.nn.transformer import PixelTransformer
from genjax.steps import pixelcnn as psteps
from genjax.tasks import pixelcnn as tasks

from conftest import (check_loaded_run, check_resumes_exactly, copy_flax_layer, perturbed,
                      short_run_config)


def _random_params(model, x, labels=None, scale=0.3, seed=0):
    """Initial parameters with every leaf perturbed (zero-initialised layers would hide
    paths from the gradients)."""
    return perturbed(jax.jit(model.init)(jax.random.key(seed), x, labels)["params"], scale,
                     seed + 1)


def _dependence(model, shape, seed=0):
    """[HW, HW] boolean: output pixel p's parameters depend on input pixel q (any
    channel), from the exact Jacobian of a random network at a random input."""
    x = jax.random.uniform(jax.random.key(seed + 7), (1, *shape), minval=-1.0)
    params = _random_params(model, x, seed=seed)
    jacobian = jax.jit(jax.jacrev(lambda x: model.apply({"params": params}, x)))
    jac = jacobian(x)  # [1,H,W,P,1,H,W,C]
    h, w = shape[:2]
    return np.abs(np.asarray(jac)).sum(axis=(0, 3, 4, 7)).reshape(h * w, h * w) > 0


NETS = {"pixelcnn": lambda out: P.PixelCNN(out, features=8, num_layers=3, head=8),
        "gated": lambda out: P.GatedPixelCNN(out, features=8, num_layers=4, head=8),
        "pixelcnn++": lambda out: P.PixelCNNPP(out, features=8, num_blocks=2),
        "row_lstm": lambda out: R.PixelRNN(out, "row_lstm", features=4, num_layers=2, head=8),
        "diagonal_bilstm": lambda out: R.PixelRNN(out, "diagonal_bilstm", features=4,
                                                  num_layers=2, head=8),
        "transformer": lambda out: PixelTransformer(out, features=8, num_layers=2, num_heads=2)}


@pytest.mark.parametrize("name", list(NETS))
def test_no_output_sees_its_own_pixel_or_a_later_one(name):
    """Zero gradient of output pixel i with respect to every input pixel at i or after
    it in raster order (all channels of those pixels)."""
    dep = _dependence(NETS[name](3), (7, 7, 3))
    assert not np.any(np.triu(dep)), np.argwhere(np.triu(dep))[:5]


@pytest.mark.parametrize("name", ["gated", "pixelcnn++", "diagonal_bilstm", "transformer"])
def test_gated_stacks_see_every_earlier_pixel(name):
    """No blind spot: on a 6x6 image every output depends on every earlier pixel."""
    dep = _dependence(NETS[name](1), (6, 6, 1))
    missing = np.argwhere(np.tril(~dep, k=-1))
    assert len(missing) == 0, missing[:5]


def test_plain_pixelcnn_has_the_blind_spot():
    """Stacked masked 3x3 convolutions never see some pixels above and to the right, even
    ones inside the bounding box they reach: output (4, 3) of a 7x7 first layer and
    three 3x3 layers reaches rows 4 - 6 .. 4 and columns up to 3 + 6, yet misses pixel
    (3, 9), which the gated stack sees."""
    shape = (8, 10, 1)
    p, q = 4 * 10 + 3, 3 * 10 + 9
    assert not _dependence(NETS["pixelcnn"](1), shape)[p, q]
    assert _dependence(P.GatedPixelCNN(1, features=8, num_layers=4, head=8), shape)[p, q]
    assert _dependence(NETS["pixelcnn"](1), shape)[p, 3 * 10 + 5]  # the visible part


def _row_lstm_reach(h: int, w: int, layers: int) -> np.ndarray:
    """[HW, HW]: which pixels each output of a Row LSTM can depend on, from the
    definitions: the 7x7 type-A layer sees 3 rows up (7 columns) and 3 columns left; each
    layer's state at (i, j) adds the layer's input at (i, j - 1) and (i, j) and the states
    at (i - 1, j - 1 .. j + 1); the residual stream keeps the input's."""
    n, at = h * w, lambda i, j: i * w + j
    reach = np.zeros((n, n), bool)
    for i, j in itertools.product(range(h), range(w)):
        for a, b in itertools.product(range(1, 4), range(-3, 4)):
            if i - a >= 0 and 0 <= j + b < w:
                reach[at(i, j), at(i - a, j + b)] = True
        for b in range(1, min(j, 3) + 1):
            reach[at(i, j), at(i, j - b)] = True
    for _ in range(layers):
        state = np.zeros((h, w, n), bool)
        for i, j in itertools.product(range(h), range(w)):
            state[i, j] = reach[at(i, j)] | (reach[at(i, j - 1)] if j else False)
            for b in (-1, 0, 1):
                if i and 0 <= j + b < w:
                    state[i, j] |= state[i - 1, j + b]
        reach = reach | state.reshape(n, n)
    return reach


def test_row_lstm_sees_exactly_its_triangle():
    """The Row LSTM's outputs depend on exactly the pixels its definition reaches (a
    triangle above each pixel, widening by a column per row and layer): nothing more (no
    leak) and nothing less (every path is wired); it misses part of the context the
    Diagonal BiLSTM sees."""
    dep = _dependence(NETS["row_lstm"](1), (9, 8, 1))
    want = _row_lstm_reach(9, 8, 2)
    np.testing.assert_array_equal(dep, want)
    assert np.tril(~want, k=-1).sum() > 0


def test_skew_and_unskew_are_exact_inverses():
    """Row i of the skewed map starts i columns right; unskew undoes it bit for bit."""
    x = jax.random.normal(jax.random.key(0), (2, 5, 7, 3))
    skewed = R.skew(x)
    assert skewed.shape == (2, 5, 11, 3)
    for i in range(5):
        chex.assert_trees_all_equal(skewed[:, i, i:i + 7], x[:, i])
        assert not np.any(skewed[:, i, :i]) and not np.any(skewed[:, i, i + 7:])
    chex.assert_trees_all_equal(R.unskew(skewed, 7), x)


@pytest.mark.parametrize("kind", R.KINDS)
def test_state_to_state_matmul_is_the_convolution(kind):
    """The recurrence's state-to-state step as one matrix product of shifted states equals
    the XLA convolution it replaces, and the whole networks agree either way."""
    h = jax.random.normal(jax.random.key(0), (3, 9, 4))
    for offsets in ((-1, 0, 1), (-1, 0)):
        kernel = jax.random.normal(jax.random.key(1), (len(offsets), 4, 16))
        np.testing.assert_allclose(R.state_to_state(h, kernel, offsets),
                                   R.state_to_state(h, kernel, offsets, conv=True),
                                   rtol=1e-5, atol=1e-5)
    model = NETS[kind](1)
    x = (jax.random.uniform(jax.random.key(2), (2, 6, 5, 1)) < 0.5).astype(jnp.float32)
    params = _random_params(model, x)
    np.testing.assert_allclose(model.apply({"params": params}, x),
                               model.clone(state_conv=True, unroll=3).apply({"params": params}, x),
                               rtol=1e-5, atol=1e-5)


def test_masked_conv_is_the_full_masked_convolution():
    """Convolving only the top rows equals the textbook masked k x k convolution."""
    x = jax.random.normal(jax.random.key(0), (2, 9, 9, 3))
    for kind in P.MASK_TYPES:
        layer = P.MaskedConv(5, (7, 7), kind)
        params = layer.init(jax.random.key(1), x)["params"]
        kernel = params["kernel"] * P.causal_mask(7, 7, kind)[:, :, None, None]
        want = jax.lax.conv_general_dilated(x, kernel, (1, 1), "SAME",
                                            dimension_numbers=("NHWC", "HWIO", "NHWC"))
        np.testing.assert_allclose(layer.apply({"params": params}, x), want + params["bias"],
                                   rtol=1e-5, atol=1e-5)
    assert P.causal_mask(3, 3, "A").tolist() == [[1, 1, 1], [1, 0, 0], [0, 0, 0]]
    assert P.causal_mask(3, 3, "B").tolist() == [[1, 1, 1], [1, 1, 0], [0, 0, 0]]


@pytest.mark.parametrize("name", list(NETS))
def test_bernoulli_model_is_a_distribution_over_all_binary_images(name):
    """Enumerate the 512 binary 3x3 images: their probabilities sum to 1 (true only for a
    causal network, whatever its weights), for every class of a conditional model."""
    model = NETS[name](1).clone(num_classes=2)
    images = np.array(list(itertools.product([0.0, 1.0], repeat=9)), np.float32).reshape(-1, 3, 3, 1)
    labels = np.zeros(len(images), np.int32)
    params = _random_params(model, images[:1], labels[:1], scale=0.5)
    for c in (0, 1):
        out = model.apply({"params": params}, images, labels + c)
        total = jnp.sum(jnp.exp(L.log_likelihood("bernoulli", out, images)))
        np.testing.assert_allclose(total, 1.0, rtol=1e-5)


@pytest.mark.slow(seconds=33)  # on 2 cores
def test_logistic_mixture_model_is_a_distribution_over_all_8bit_images():
    """Every 8-bit 1x2 image (65,536): the network's discretised mixture sums to 1."""
    levels = np.arange(256) / 127.5 - 1.0
    images = np.stack(np.meshgrid(levels, levels, indexing="ij"), -1).reshape(-1, 1, 2, 1)
    model = NETS["pixelcnn++"](L.num_params("logistic_mixture", 1, 3))
    params = _random_params(model, images[:1].astype(np.float32))
    out = model.apply({"params": params}, images.astype(np.float32))
    logp = L.log_likelihood("logistic_mixture", out, images.astype(np.float32), 3)
    np.testing.assert_allclose(jnp.sum(jnp.exp(logp)), 1.0, rtol=1e-4)


def _reference_log_prob(params, x, k):
    """The mixture's log-probability of one pixel in float64 with scipy, written from the
    definition: channel means shifted by tanh coefficients times earlier channels."""
    c = len(x)
    logits, rest = params[:k], params[k:]
    means, log_scales = rest[:c * k].reshape(c, k), np.maximum(rest[c * k:2 * c * k].reshape(c, k), -7)
    coeffs = np.tanh(rest[2 * c * k:]).reshape(-1, k)
    pairs = [(a, b) for a in range(c) for b in range(a)]
    total = special.log_softmax(logits)
    for ch in range(c):
        mean = means[ch] + sum(coeffs[i] * x[b] for i, (a, b) in enumerate(pairs) if a == ch)
        inv = np.exp(-log_scales[ch])
        hi = special.expit((x[ch] + 1 / 255 - mean) * inv)
        lo = special.expit((x[ch] - 1 / 255 - mean) * inv)
        mass = hi if x[ch] < -0.999 else (1 - lo if x[ch] > 0.999 else hi - lo)
        with np.errstate(divide="ignore"):  # a component without mass: log 0 = -inf
            total = total + np.log(mass)
    return special.logsumexp(total)


def test_logistic_mixture_matches_a_float64_reference_and_sums_to_one():
    """Per-pixel log-probabilities against scipy in float64 (3 channels, 4 components,
    including the edge levels); two channels' 65,536 joint levels sum to 1."""
    rng = np.random.default_rng(0)
    k, c = 4, 3
    params = rng.normal(0, 1.0, (50, L.num_params("logistic_mixture", c, k))).astype(np.float32)
    x = (rng.integers(0, 256, (50, c)) / 127.5 - 1.0).astype(np.float32)
    x[:5, 0], x[5:10, 2] = -1.0, 1.0
    got = L.logistic_mixture_log_prob(params[:, None, None], x[:, None, None], k)[:, 0, 0]
    want = [_reference_log_prob(p.astype(np.float64), v.astype(np.float64), k)
            for p, v in zip(params, x)]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    levels = np.arange(256) / 127.5 - 1.0
    grid = np.stack(np.meshgrid(levels, levels, indexing="ij"), -1).reshape(-1, 2)
    n2 = L.num_params("logistic_mixture", 2, k)
    p2 = np.broadcast_to(params[0, :n2], (len(grid), n2))
    total = jnp.sum(jnp.exp(L.logistic_mixture_log_prob(p2, grid.astype(np.float32), k)))
    np.testing.assert_allclose(total, 1.0, rtol=1e-4)


def test_logistic_mixture_is_finite_and_differentiable_at_extremes():
    """Very sharp and very broad components, means far outside [-1, 1]: finite values
    and gradients (no where-branch NaN)."""
    x = jnp.array([[-1.0], [1.0], [0.0], [2 / 255 - 1]])
    params = jnp.array([[0.0, 30.0, -7.5], [0.0, -30.0, -7.5], [0.0, 0.0, 12.0], [0.0, 5.0, -9.0]])
    value, grad = jax.value_and_grad(lambda p: jnp.sum(L.logistic_mixture_log_prob(p, x, 1)))(params)
    assert np.isfinite(value) and np.all(np.isfinite(grad)), (value, grad)


def test_mixture_samples_follow_the_exact_probabilities():
    """200,000 draws of a two-channel pixel: the histogram of each channel's first level
    and the joint frequencies match the enumerated probabilities."""
    k = 2
    n = L.num_params("logistic_mixture", 2, k)
    params = jnp.asarray(np.random.default_rng(1).normal(0, 1, n), jnp.float32)
    params = params.at[k:3 * k].multiply(0.3)  # means inside [-1, 1]
    draws = L.sample_logistic_mixture(jax.random.key(0), jnp.broadcast_to(params, (200_000, n)), 2, k)
    levels = jnp.round((draws + 1.0) * 127.5).astype(int)
    joint = np.zeros((256, 256))
    np.add.at(joint, (np.asarray(levels[:, 0]), np.asarray(levels[:, 1])), 1.0)
    grid = (np.stack(np.meshgrid(np.arange(256), np.arange(256), indexing="ij"), -1) / 127.5 - 1.0)
    probs = np.exp(np.asarray(L.logistic_mixture_log_prob(
        jnp.broadcast_to(params, (256, 256, n)), grid.astype(np.float32), k)))
    coarse = lambda a: a.reshape(16, 16, 16, 16).sum(axis=(1, 3))  # 16 x 16 blocks of levels
    np.testing.assert_allclose(coarse(joint) / 200_000, coarse(probs), atol=4e-3)


def test_sampler_draws_pixels_in_raster_order_from_the_image_so_far():
    """A hand-made causal "network" whose pixel is 1 exactly when the previous pixel in
    raster order is 0 (certain logits): sampling writes 1, 0, 1, 0, ... in raster order;
    a completion keeps the given pixels and continues from them; same key, same image."""
    def apply(params, x, labels=None):
        flat = x.reshape(x.shape[0], -1)
        prev = jnp.pad(flat, ((0, 0), (1, 0)), constant_values=0.0)[:, :-1]
        return (40.0 * (1.0 - 2.0 * prev)).reshape(x.shape)

    draw = jax.jit(psteps.make_sampler(apply, "bernoulli", (3, 4, 1)), static_argnames="first")
    out = draw(None, jax.random.key(0), jnp.zeros((2, 3, 4, 1)))
    np.testing.assert_array_equal(out.reshape(2, -1), np.tile([1.0, 0.0], (2, 6)))
    start = jnp.zeros((1, 3, 4, 1)).at[0, 0, 0].set(1.0).at[0, 0, 1].set(1.0)
    done = draw(None, jax.random.key(0), start, first=2)
    np.testing.assert_array_equal(done.reshape(-1), [1, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1])


def test_sampling_a_network_is_deterministic_per_key():
    model = NETS["gated"](1)
    x = jnp.zeros((3, 5, 5, 1))
    params = _random_params(model, x)
    apply = lambda p, x, labels=None: model.apply({"params": p}, x)
    draw = jax.jit(psteps.make_sampler(apply, "bernoulli", (5, 5, 1)))
    a, b = draw(params, jax.random.key(3), x), draw(params, jax.random.key(3), x)
    chex.assert_trees_all_equal(a, b)
    assert not np.array_equal(a, draw(params, jax.random.key(4), x))
    assert set(np.unique(a)) <= {0.0, 1.0}


@pytest.mark.parametrize("name,likelihood,guidance", [
    ("gated", "bernoulli", 0.0), ("gated", "bernoulli", 2.0), ("row_lstm", "bernoulli", 0.0),
    ("diagonal_bilstm", "bernoulli", 2.0),
    pytest.param("pixelcnn++", "logistic_mixture", 0.0, marks=pytest.mark.slow(seconds=24))])
def test_rowwise_sampling_equals_full_passes(name, likelihood, guidance):
    """The sampler that computes the context once per row draws the very images of the
    one that runs the whole network per pixel (same key), for a conditional model (guided
    too: label 3 is the null label) and for a completion; and the rows from the context
    are the network's output."""
    model = NETS[name](L.num_params(likelihood, 1, 2)).clone(num_classes=4 if guidance else 3)
    x, labels = jnp.zeros((4, 5, 6, 1)), jnp.array([0, 1, 2, 1])
    params = _random_params(model, x, labels)
    method = lambda name: (lambda p, *a: model.apply({"params": p}, *a, method=name))

    def make(rowwise):
        apply = method("__call__")
        if guidance:
            apply, rowwise = psteps.guided(apply, rowwise, guidance, 3)
        return jax.jit(psteps.make_sampler(apply, likelihood, (5, 6, 1), 2, rowwise),
                       static_argnames="first")

    full, cached = make(None), make((method("context"), method("rows")))
    a = full(params, jax.random.key(0), x, labels)
    chex.assert_trees_all_equal(a, cached(params, jax.random.key(0), x, labels))
    start = a.at[:, 2:].set(0.0).at[:, 1, 3:].set(0.0)  # keep the first 9 pixels
    chex.assert_trees_all_equal(full(params, jax.random.key(5), start, labels, first=9),
                                cached(params, jax.random.key(5), start, labels, first=9))
    ctx = method("context")(params, a, labels)
    row = jax.tree.map(lambda t: t[..., 3:4, :, :], ctx)
    whole = model.apply({"params": params}, a, labels)[:, 3:4]
    # float32 roundoff of sums as large as the outputs (PixelCNN++'s reach ~100)
    np.testing.assert_allclose(method("rows")(params, a[:, 3:4], row, labels), whole,
                               rtol=1e-5, atol=1e-5 * float(np.abs(whole).max()))
    assert len(np.unique(a)) > 2 if likelihood != "bernoulli" else set(np.unique(a)) <= {0, 1}


def _task_sampler(model, shape, guidance=0.0, num_classes=0):
    """The sampler the task builds for ``model`` (rowwise, cached or full passes)."""
    config = ml_collections.ConfigDict({"likelihood": "bernoulli", "num_mixtures": 0,
                                        "compute_dtype": "float32", "guidance": guidance,
                                        "num_classes": num_classes})
    return jax.jit(tasks.make_sampler(model, config, shape), static_argnames="first")


@pytest.mark.parametrize("guidance", [0.0, 2.0])
def test_cached_transformer_sampling_equals_full_recomputation(guidance):
    """The key/value-cached sampler (one position per step) draws the very images of the
    sampler that recomputes the whole sequence per pixel (same key), for a conditional
    model (guided too) and a completion; each cached step's logits are within 1e-5 of the
    full pass's."""
    model = NETS["transformer"](1).clone(num_classes=4 if guidance else 3, positional="2d")
    x, labels = jnp.zeros((4, 5, 6, 1)), jnp.array([0, 1, 2, 1])
    params = _random_params(model, x, labels)
    cached = _task_sampler(model, (5, 6, 1), guidance, 3)
    apply = lambda p, x, labels: model.apply({"params": p}, x, labels)
    if guidance:
        apply = psteps.guided(apply, None, guidance, 3)[0]
    full = jax.jit(psteps.make_sampler(apply, "bernoulli", (5, 6, 1)), static_argnames="first")
    a = full(params, jax.random.key(0), x, labels)
    chex.assert_trees_all_equal(a, cached(params, jax.random.key(0), x, labels))
    start = a.at[:, 2:].set(0.0).at[:, 1, 3:].set(0.0)
    chex.assert_trees_all_equal(full(params, jax.random.key(5), start, labels, first=9),
                                cached(params, jax.random.key(5), start, labels, first=9))
    whole = model.apply({"params": params}, a, labels).reshape(4, 30)
    cache = model.apply({"params": params}, a, labels, method="init_cache")
    step = jax.jit(lambda c, pos: model.apply({"params": params}, a, c, pos, labels, method="step"))
    for pos in range(30):
        out, cache = step(cache, pos)
        np.testing.assert_allclose(out[:, 0], whole[:, pos], atol=1e-5)
    assert set(np.unique(a)) <= {0.0, 1.0} and 0 < a.mean() < 1


@pytest.mark.parametrize("name", ["row_lstm", "diagonal_bilstm", "transformer"])
def test_fast_samplers_draw_the_enumerated_distribution(name):
    """20,000 images of 2x3 binary pixels from the sampler the task builds (rowwise for
    the PixelRNNs, cached for the Transformer): their frequencies over all 64 images fit
    the network's exact probabilities (chi-square p > 0.001, rare images pooled), which
    sum to 1."""
    model = NETS[name](1)
    images = np.array(list(itertools.product([0.0, 1.0], repeat=6)), np.float32).reshape(-1, 2, 3, 1)
    params = _random_params(model, images[:1], scale=0.6, seed=3)
    probs = np.exp(np.asarray(L.log_likelihood(
        "bernoulli", model.apply({"params": params}, images), images), np.float64))
    np.testing.assert_allclose(probs.sum(), 1.0, rtol=1e-5)
    draws = _task_sampler(model, (2, 3, 1))(params, jax.random.key(0), jnp.zeros((20000, 2, 3, 1)))
    codes = np.asarray(draws).reshape(-1, 6) @ (2 ** np.arange(5, -1, -1))
    counts, expected = np.bincount(codes.astype(int), minlength=64), probs / probs.sum() * 20000
    rare = expected < 5  # pooled: the chi-square approximation needs 5 expected per cell
    if rare.any():
        counts = np.append(counts[~rare], counts[rare].sum())
        expected = np.append(expected[~rare], expected[rare].sum())
    assert stats.chisquare(counts, expected).pvalue > 1e-3


def test_guided_sampling_draws_the_guided_conditionals():
    """A "network" of per-class, per-pixel logits l[c] (no dependence on the pixels):
    guided sampling draws each pixel with probability sigmoid((1 + w) l[c] - w l[null]),
    within 4.5 binomial standard errors over 4,000 images, and the rowwise form (the
    context doubled, the rows guided) draws the very same images."""
    h, w, k, guidance = 3, 4, 2, 1.5
    table = jax.random.normal(jax.random.key(1), (k + 1, h, w, 1)) * 1.5
    apply = lambda params, x, labels: table[labels]
    context = lambda params, x, labels: table[labels]
    rows = lambda params, line, ctx, labels: ctx
    labels = jnp.arange(4000) % k
    draws = []
    for rowwise in (None, (context, rows)):
        guided_apply, guided_rowwise = psteps.guided(apply, rowwise, guidance, k)
        draw = jax.jit(psteps.make_sampler(guided_apply, "bernoulli", (h, w, 1), 0, guided_rowwise))
        draws.append(draw(None, jax.random.key(0), jnp.zeros((4000, h, w, 1)), labels))
    chex.assert_trees_all_equal(*draws)
    for c in range(k):
        p = jax.nn.sigmoid((1 + guidance) * table[c] - guidance * table[k])
        found = draws[0][labels == c].mean(0)
        np.testing.assert_array_less(np.abs(found - p), 4.5 * np.sqrt(p * (1 - p) / 2000) + 1e-6)
    unguided = jax.nn.sigmoid(table[0])  # the guided marginals are not the conditional ones
    assert np.abs(draws[0][labels == 0].mean(0) - unguided).max() > 0.1


def test_label_dropout_swaps_labels_for_the_null_label_at_its_rate():
    """`drop_labels` replaces about ``rate`` of the labels (4 standard errors over 20,000)
    by the null label and keeps the rest; the loss with label dropout is the loss on those
    labels (same key), and with none the key changes nothing."""
    from genjax.steps.common import drop_labels

    labels = jnp.arange(20000) % 3
    dropped = drop_labels(jax.random.key(0), labels, 0.2, 3)
    null = np.asarray(dropped == 3)
    assert abs(null.mean() - 0.2) < 4 * np.sqrt(0.2 * 0.8 / 20000)
    np.testing.assert_array_equal(dropped[~null], labels[~null])
    model = NETS["gated"](1).clone(num_classes=4)
    x = (jax.random.uniform(jax.random.key(2), (6, 5, 5, 1)) < 0.5).astype(jnp.float32)
    batch = {"image": x, "label": jnp.array([0, 1, 2, 0, 1, 2])}
    params = _random_params(model, x, batch["label"])
    apply = lambda p, x, labels: model.apply({"params": p}, x, labels)
    key = jax.random.key(7)
    value = psteps.nll_loss(apply, "bernoulli", conditional=True, label_dropout=0.5, num_classes=3)
    plain = psteps.nll_loss(apply, "bernoulli", conditional=True)
    expected = {**batch, "label": drop_labels(key, batch["label"], 0.5, 3)}
    assert not np.array_equal(expected["label"], batch["label"])
    np.testing.assert_allclose(value(params, batch, key)[0], plain(params, expected, key)[0], rtol=1e-6)
    assert plain(params, batch, key)[0] == plain(params, batch, jax.random.key(8))[0]


def test_plain_pixelcnn_samples_from_a_window_of_the_rows_it_sees():
    """The plain PixelCNN's output at row i is the same computed on the `rows_above` + 1
    rows ending at i (and not on one row fewer), so the sampler that runs each pass on
    that window draws the very images of the whole-image passes (same key, a completion)."""
    model = P.PixelCNN(1, features=4, num_layers=1, head=8)
    x = (jax.random.uniform(jax.random.key(1), (2, 8, 5, 1)) < 0.5).astype(jnp.float32)
    params = _random_params(model, x)
    apply = jax.jit(lambda p, x, labels=None: model.apply({"params": p}, x))
    full = apply(params, x)
    for rows, exact in ((model.rows_above, True), (model.rows_above - 1, False)):
        window = apply(params, x[:, 7 - rows:])[:, -1]
        assert np.allclose(window, full[:, 7], atol=1e-6) == exact, rows
    make = lambda rows: jax.jit(psteps.make_sampler(apply, "bernoulli", (8, 5, 1), 0, None, rows),
                                static_argnames="first")
    whole, windowed = make(None), make(model.rows_above)
    a = whole(params, jax.random.key(0), jnp.zeros_like(x))
    chex.assert_trees_all_equal(a, windowed(params, jax.random.key(0), jnp.zeros_like(x)))
    chex.assert_trees_all_equal(whole(params, jax.random.key(2), x, first=12),
                                windowed(params, jax.random.key(2), x, first=12))


@pytest.mark.slow(seconds=27)  # on 2 cores
def test_nll_loss_gradient_matches_finite_differences():
    """The training loss (mean NLL over images) against central differences in float64
    (small weights: log-scales well above their floor of -7, where the loss has a kink)."""
    model = NETS["pixelcnn++"](L.num_params("logistic_mixture", 1, 2))
    x = (np.random.default_rng(0).integers(0, 256, (2, 3, 3, 1)) / 127.5 - 1.0)
    with jax.enable_x64(True):
        params = jax.tree.map(lambda p: p.astype(jnp.float64),
                              _random_params(model, x[:1].astype(np.float32), scale=0.05))
        apply = lambda p, x, labels=None: model.apply({"params": p}, x)
        loss = psteps.nll_loss(apply, "logistic_mixture", 2)
        f = jax.jit(lambda p: loss(p, {"image": jnp.asarray(x)}, None)[0])
        grad = jax.jit(jax.grad(f))(params)
        leaves, tree = jax.tree.flatten(params)
        direction = jax.tree.unflatten(tree, [jax.random.normal(jax.random.key(i), p.shape, p.dtype)
                                              for i, p in enumerate(leaves)])
        eps = 1e-6
        shift = lambda s: jax.tree.map(lambda p, d: p + s * d, params, direction)
        numeric = (f(shift(eps)) - f(shift(-eps))) / (2 * eps)
        analytic = sum(jnp.vdot(g, d) for g, d in zip(jax.tree.leaves(grad), jax.tree.leaves(direction)))
        np.testing.assert_allclose(analytic, numeric, rtol=1e-6)


def test_config_trains_and_scores(data_dir, tmp_path):
    """The default `:test` config trains 4 steps through the real loop and leaves the exact
    test NLL (with its standard error), the domain metrics, and the sample and completion
    grids."""
    import json

    from genjax import loop

    state = loop.train_and_evaluate(short_run_config("gated_pixelcnn_mnist", data_dir), str(tmp_path))
    assert int(state.step) == 4
    assert (tmp_path / "samples.png").exists() and (tmp_path / "completions.png").exists()
    final = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")][-1]
    assert np.isfinite(final["test/domain_fid"]) and 0 < final["test/nll"] < 784 * np.log(2) * 2, final
    assert final["test/nll_stderr"] > 0
    np.testing.assert_allclose(final["test/bits_per_dim"], final["test/nll"] / (784 * np.log(2)),
                               rtol=1e-6)


def _nchw(x):
    import torch

    return torch.from_numpy(np.array(x).transpose(0, 3, 1, 2))


@pytest.mark.slow(seconds=9)  # each, on 2 cores
@pytest.mark.parametrize("num_classes", [0, 10])
def test_pytorch_reference_gated_pixelcnn_is_the_same_function(num_classes):
    """The benchmark's PyTorch peer (benchmarks/torch_reference.py) is the same network:
    genjax's parameters loaded into it, layer by name, give the same outputs."""
    torch = pytest.importorskip("torch")
    from benchmarks import torch_reference as ref

    model = P.GatedPixelCNN(1, features=8, num_layers=3, head=16, num_classes=num_classes)
    x = (jax.random.uniform(jax.random.key(0), (3, 28, 28, 1)) < 0.5).astype(jnp.float32)
    labels = jnp.array([1, 9, 3]) if num_classes else None
    params = _random_params(model, x, labels)
    peer = ref.GatedPixelCNN(1, 8, 3, 16, num_classes)
    with torch.no_grad():
        for name, p in params.items():
            group, _, index = name.rpartition("_")
            copy_flax_layer(getattr(peer, group)[int(index)] if group else getattr(peer, name), p)
        ours = model.apply({"params": params}, x, labels)
        theirs = peer(_nchw(x), torch.from_numpy(np.array(labels)) if num_classes else None)
    np.testing.assert_allclose(theirs.numpy().transpose(0, 2, 3, 1), ours, atol=1e-4, rtol=1e-4)


@pytest.mark.slow(seconds=10)  # on 2 cores
def test_pytorch_reference_pixelcnn_pp_and_its_likelihood_are_the_same_functions():
    """The benchmark's PyTorch PixelCNN++ (benchmarks/torch_reference.py), with genjax's
    parameters loaded block by block, gives the same mixture parameters, and its
    discretised logistic mixture the same log-likelihood per pixel, edge bins included."""
    torch = pytest.importorskip("torch")
    from benchmarks import torch_reference as ref

    k, names = 3, {"ShiftedConv_0": "conv0.conv", "ShiftedConv_1": "conv1.conv",
                   "Dense_0": "dense", "Embed_0": "embed"}
    model = P.PixelCNNPP(L.num_params("logistic_mixture", 1, k), features=8, num_blocks=2,
                         num_classes=10)
    levels = jax.random.randint(jax.random.key(0), (3, 28, 28, 1), 0, 256).at[0, :2].set(0)
    x = (levels.at[1, :2].set(255) * 2 / 255 - 1).astype(jnp.float32)
    labels = jnp.array([1, 9, 3])
    params = _random_params(model, x, labels, scale=0.1)  # 0.3: outputs in the hundreds
    peer = ref.PixelCNNPP(3 * k, 8, 2, 10)
    with torch.no_grad():
        for name, p in params.items():
            group, _, index = name.rpartition("_")
            if group.endswith("blocks"):
                for layer, q in p.items():
                    copy_flax_layer(getattr(peer, group)[int(index)].get_submodule(names[layer]), q)
            else:
                copy_flax_layer(peer.out if name == "out" else getattr(peer, name).conv, p)
        ours = model.apply({"params": params}, x, labels)
        theirs = peer(_nchw(x), torch.from_numpy(np.array(labels)))
        log_p = ref.logistic_mixture_log_prob(theirs, _nchw(x), k)
    np.testing.assert_allclose(theirs.numpy().transpose(0, 2, 3, 1), ours, atol=1e-4, rtol=1e-4)
    assert np.all(np.isfinite(log_p.numpy()))
    np.testing.assert_allclose(log_p.numpy(), L.logistic_mixture_log_prob(ours, x, k),
                               atol=1e-4, rtol=1e-4)


@pytest.mark.slow(seconds=15)  # each, on 2 cores
@pytest.mark.parametrize("kind", R.KINDS)
def test_pytorch_reference_pixelrnn_is_the_same_function(kind):
    """The benchmark's PyTorch PixelRNN (a Python loop over rows or diagonals with
    ``Conv1d`` state-to-state steps) is the same network: genjax's parameters loaded into
    it give the same outputs."""
    torch = pytest.importorskip("torch")
    from benchmarks import torch_reference as ref

    model = R.PixelRNN(1, kind, features=4, num_layers=2, head=8)
    x = (jax.random.uniform(jax.random.key(0), (3, 9, 7, 1)) < 0.5).astype(jnp.float32)
    params = _random_params(model, x)
    peer = ref.PixelRNN(kind, 1, 4, 2, 8)
    with torch.no_grad():
        for name, p in params.items():
            group, _, index = name.rpartition("_")
            if name.startswith("state_"):
                d, i = name.split("_")[1:]
                peer.states[d][int(i)].weight.copy_(torch.from_numpy(np.array(p).transpose(2, 1, 0)))
            elif name.startswith("to_gates_"):
                d, i = name.split("_")[2:]
                copy_flax_layer(peer.to_gates[d][int(i)], p)
            elif group == "residuals":
                copy_flax_layer(peer.residuals[int(index)], p)
            else:
                copy_flax_layer(getattr(peer, name), p)
        theirs = peer(_nchw(x))
    np.testing.assert_allclose(theirs.numpy().transpose(0, 2, 3, 1),
                               model.apply({"params": params}, x), atol=1e-5, rtol=1e-5)


@pytest.mark.slow(seconds=10)  # on 2 cores
def test_pytorch_reference_transformer_is_the_same_function():
    """The benchmark's PyTorch Transformer (``nn.TransformerEncoderLayer`` blocks under a
    causal mask) is the same network: genjax's parameters loaded into it, block by block,
    give the same outputs."""
    torch = pytest.importorskip("torch")
    from benchmarks import torch_reference as ref

    model = PixelTransformer(1, features=8, num_layers=2, num_heads=2, mlp_ratio=2)
    x = (jax.random.uniform(jax.random.key(0), (3, 5, 6, 1)) < 0.5).astype(jnp.float32)
    params = _random_params(model, x)
    peer = ref.PixelTransformer(1, 8, 2, 2, 2, 30)
    t = lambda a: torch.from_numpy(np.array(a))
    with torch.no_grad():
        copy_flax_layer(peer.pixel_embed, params["pixel_embed"])
        peer.start.copy_(t(params["start"]))
        peer.positions.copy_(t(params["positions"]["positions"]))
        for i, block in enumerate(peer.blocks):
            p = params[f"blocks_{i}"]
            block.self_attn.in_proj_weight.copy_(t(p["Dense_0"]["kernel"]).T)
            block.self_attn.in_proj_bias.copy_(t(p["Dense_0"]["bias"]))
            for layer, mine in ((block.self_attn.out_proj, "Dense_1"), (block.linear1, "Dense_3"),
                                (block.linear2, "Dense_2"), (block.norm1, "LayerNorm_0"),
                                (block.norm2, "LayerNorm_1")):
                copy_flax_layer(layer, p[mine])
        copy_flax_layer(peer.norm, params["norm"])
        copy_flax_layer(peer.out, params["out"])
        peer.eval()
        theirs = peer(_nchw(x))
    np.testing.assert_allclose(theirs.numpy().transpose(0, 2, 3, 1),
                               model.apply({"params": params}, x), atol=1e-5, rtol=1e-5)


def test_plain_pixelcnn_config_builds_and_steps():
    """`pixelcnn_mnist:test` (the masked net with the blind spot) initialises and takes a
    step that lowers nothing to NaN. It shares the task, step and loop path with the Gated
    PixelCNN below; its sampler runs the network once per pixel (784 passes per grid and
    evaluation, on the window tested above), too slow for a run through the loop here."""
    from genjax.configs import pixelcnn_mnist
    from genjax.tasks import TASKS

    c = pixelcnn_mnist.get_config("test")
    task = TASKS[c.task](c, (28, 28, 1))
    state = task.init(jax.random.key(0))
    batch = {"image": (np.random.default_rng(0).uniform(size=(4, 28, 28, 1)) < 0.3).astype(np.float32)}
    state, metrics = jax.jit(task.train_step)(state, batch)
    assert int(state.step) == 1 and np.isfinite(float(metrics["loss"])) and float(metrics["loss"]) > 0


@pytest.mark.slow(seconds=190)  # on 2 cores: pixel-by-pixel sampling in every run
@pytest.mark.parametrize("name", ["pixelcnn_pp_mnist", "pixel_transformer_mnist"])
def test_each_config_trains_and_resumes_exactly(name, data_dir, tmp_path, capsys):
    """PixelCNN++'s `:test` variant (class-conditional here; `pixelcnn_pp_cifar10:test` is
    its network) and the Transformer's (class-conditional: its class token; the cached
    sampler in every grid) train 4 steps through the loop; with the step-4 checkpoint
    removed, the same run resumes from step 2 and ends bitwise equal; the final evaluation
    reports the exact NLL (bits/dim) and the class accuracy. (The class-conditional Gated
    PixelCNN's step is checked under every driver in tests/test_parallel.py; its loop
    path, which the PixelRNNs share with their rowwise samplers, is the Gated PixelCNN's,
    trained in test_config_trains_and_scores above.)"""
    c = short_run_config(name, data_dir)
    c.eval_samples = c.eval_batch_size = 50
    if name in ("pixelcnn_pp_mnist", "pixel_transformer_mnist"):
        c.num_classes = 10
    final = check_resumes_exactly(c, tmp_path, capsys)
    assert 0 < final["test/bits_per_dim"] < 8, final
    if c.num_classes:
        assert 0 <= final["test/domain_class_accuracy"] <= 1
    check_loaded_run(tmp_path, final, "test/nll", tmp_path=tmp_path)  # given the test labels
