"""Diffusion: schedules, the posterior, targets and the bound against closed forms,
the samplers against the exact denoiser of Gaussian data, the U-Net, and the `:test`
config trained, scored and resumed through the loop."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate, stats

from genjax.losses import diffusion as D
from genjax.nn.diffusion import UNet
from genjax.steps import diffusion as dsteps

from conftest import check_loaded_run, check_resumes_exactly, copy_flax_layer, short_run_config


def test_linear_and_cosine_schedules_have_their_closed_forms():
    lin = D.make_schedule("linear", 1000)
    np.testing.assert_allclose(lin.betas[[0, -1]], [1e-4, 0.02])
    np.testing.assert_allclose(lin.alphas_cumprod, np.cumprod(1 - np.linspace(1e-4, 0.02, 1000)))
    cos = D.make_schedule("cosine", 1000)
    f = lambda t: np.cos((t / 1000 + 0.008) / 1.008 * np.pi / 2) ** 2
    t = np.arange(1, 900)  # before β reaches its 0.999 cap
    np.testing.assert_allclose(cos.alphas_cumprod[t - 1], f(t) / f(0), rtol=1e-10)
    assert cos.betas.max() <= 0.999
    with pytest.raises(ValueError, match="Unknown schedule 'quad'"):
        D.make_schedule("quad", 10)
    with pytest.raises(ValueError, match="linear schedule needs more than 20 timesteps"):
        D.make_schedule("linear", 10)


def test_respacing_keeps_alpha_bar_and_chains_the_kept_steps():
    s = D.make_schedule("cosine", 1000)
    keep = D.spaced_timesteps(1000, 50)
    assert keep[0] == 0 and keep[-1] == 999 and len(keep) == 50
    r = D.respace(s, keep)
    np.testing.assert_allclose(r.alphas_cumprod, s.alphas_cumprod[keep])
    np.testing.assert_allclose(np.cumprod(1 - r.betas), r.alphas_cumprod, rtol=1e-9)
    np.testing.assert_array_equal(r.timesteps, keep)
    with pytest.raises(ValueError, match=r"Sampling steps must be in \[1, 1000\], got 0"):
        D.spaced_timesteps(1000, 0)


def test_posterior_is_the_gaussian_conditional_of_the_forward_process():
    """Mean and variance of q(x_{t-1} | x_t, x_0) from the joint Gaussian of
    (x_{t-1}, x_t) given x_0, conditioned in float64."""
    s = D.make_schedule("linear", 1000)
    x0, xt = np.array([0.3]), np.array([-0.7])
    for t in (1, 10, 500, 999):
        a_prev, beta = s.alphas_cumprod[t - 1], s.betas[t]
        m_prev, v_prev = np.sqrt(a_prev) * x0, 1 - a_prev
        m_t, v_t = np.sqrt(1 - beta) * m_prev, (1 - beta) * v_prev + beta
        cov = np.sqrt(1 - beta) * v_prev
        mean = m_prev + cov / v_t * (xt - m_t)
        var = v_prev - cov ** 2 / v_t
        m, v = D.posterior(s, jnp.asarray(x0), jnp.asarray(xt), jnp.array([t]))
        np.testing.assert_allclose(m, mean, rtol=1e-5)
        np.testing.assert_allclose(v, [var], rtol=1e-5)


@pytest.mark.parametrize("prediction", D.PREDICTIONS)
def test_predictions_invert_their_targets(prediction):
    s = D.make_schedule("cosine", 1000)
    k1, k2 = jax.random.split(jax.random.key(0))
    x0, eps = jax.random.uniform(k1, (6, 4, 4, 1), minval=-1), jax.random.normal(k2, (6, 4, 4, 1))
    t = jnp.array([0, 1, 100, 500, 900, 999])
    xt = D.q_sample(s, x0, t, eps)
    x0_hat, eps_hat = D.predict_x0_eps(s, xt, t, D.target(s, x0, t, eps, prediction), prediction)
    np.testing.assert_allclose(x0_hat[:5], x0[:5], atol=2e-3)  # sqrt(ᾱ) ~ 6e-3 at t = 999
    np.testing.assert_allclose(eps_hat[1:], eps[1:], atol=2e-3)  # sqrt(1 - ᾱ) ~ 1e-2 at t = 0


def test_min_snr_weights():
    s = D.make_schedule("linear", 1000)
    t = jnp.array([0, 300, 999])
    snr = s.alphas_cumprod[[0, 300, 999]] / (1 - s.alphas_cumprod[[0, 300, 999]])
    np.testing.assert_allclose(D.loss_weight(s, t, "eps", "min_snr", 5.0),
                               np.minimum(snr, 5) / snr, rtol=1e-5)
    np.testing.assert_allclose(D.loss_weight(s, t, "v", "min_snr", 5.0),
                               np.minimum(snr, 5) / (snr + 1), rtol=1e-5)
    np.testing.assert_array_equal(D.loss_weight(s, t, "eps", "none"), 1.0)


def test_normal_kl_matches_numerical_integration():
    m1, v1, m2, v2 = 0.3, 0.5, -0.2, 1.7
    p, q = stats.norm(m1, np.sqrt(v1)), stats.norm(m2, np.sqrt(v2))
    ref = integrate.quad(lambda x: p.pdf(x) * (p.logpdf(x) - q.logpdf(x)), -20, 20)[0]
    got = D.normal_kl(jnp.array(m1), jnp.log(v1), jnp.array(m2), jnp.log(v2))
    np.testing.assert_allclose(got, ref, rtol=1e-5)


@pytest.mark.parametrize("mean,scale", [(0.0, 0.01), (0.5, 0.3), (-0.99, 1e-3), (3.0, 0.05),
                                        (0.2, 1e-4), (-5.0, 2.0)])
def test_discretized_decoder_is_a_distribution_over_the_256_levels(mean, scale):
    """Probabilities of the 256 levels sum to 1 (open edge bins), and each equals scipy's
    Gaussian mass of its bin in float64."""
    x = jnp.asarray(np.arange(256) / 127.5 - 1.0, jnp.float32)
    logp = D.discretized_gaussian_log_likelihood(x, jnp.float32(mean), jnp.log(jnp.float32(scale)))
    assert np.all(np.isfinite(logp))
    np.testing.assert_allclose(np.exp(np.asarray(logp, np.float64)).sum(), 1.0, atol=1e-4)
    edges = np.concatenate([[-np.inf], (np.arange(255) + 0.5) / 127.5 - 1.0, [np.inf]])
    ref = np.diff(stats.norm.cdf(edges, mean, scale))
    big = ref > 1e-6
    np.testing.assert_allclose(np.exp(logp)[big], ref[big], rtol=2e-3)


def _oracle(schedule, point):
    """The exact ε-predictor when all data is ``point``: ε = (x_t - sqrt(ᾱ) x*) / sqrt(1 - ᾱ)."""
    def apply(params, x, t, labels=None):
        a = jnp.asarray(schedule.alphas_cumprod, jnp.float32)[t][:, None, None, None]
        return (x - jnp.sqrt(a) * point) / jnp.sqrt(1 - a)
    return apply


def test_bound_of_the_exact_denoiser_is_prior_plus_decoder():
    """With every KL term 0 (σ² = β̃: the model's reverse step is the posterior itself)
    the bound is L_T + L_0, both in closed form: whatever the strata, the estimate is exact."""
    s = D.make_schedule("linear", 200)
    point = jnp.asarray(np.random.default_rng(0).integers(0, 256, (1, 3, 3, 1)) / 127.5 - 1,
                        jnp.float32)
    batch = {"image": jnp.repeat(point, 4, 0), "mask": jnp.ones(4)}
    a_T = s.alphas_cumprod[-1]
    x = np.asarray(point, np.float64).ravel()
    prior = np.sum(0.5 * (-1 - np.log(1 - a_T) + (1 - a_T) + a_T * x ** 2))
    sd = np.sqrt(s.betas[1] * (1 - s.alphas_cumprod[0]) / (1 - s.alphas_cumprod[1]))
    lo = np.where(x < -0.999, -np.inf, x - 1 / 255)
    hi = np.where(x > 0.999, np.inf, x + 1 / 255)
    decoder = -np.sum(np.log(stats.norm.cdf(hi, x, sd) - stats.norm.cdf(lo, x, sd)))
    for strata in (0, 7):
        vlb = dsteps.make_vlb(_oracle(s, point), s, prediction="eps", variance="small",
                              timesteps=strata)
        out = jax.jit(vlb)(None, batch, jax.random.key(1))
        np.testing.assert_allclose(out["nll_bound"] / 4, prior + decoder, rtol=1e-4)
        np.testing.assert_allclose(out["bits_per_dim"] / 4, (prior + decoder) / (9 * np.log(2)),
                                   rtol=1e-4)


def test_stratified_bound_is_unbiased_for_the_exact_sum():
    """A network that is not the posterior: the stratified estimate (5 strata) averages
    to the exact sum of all T - 1 KL terms."""
    s = D.make_schedule("linear", 40)
    point = jnp.full((1, 2, 2, 1), 0.2)
    apply = lambda p, x, t, labels=None: 0.5 * x  # a poor, smooth ε guess
    batch = {"image": jnp.repeat(point, 64, 0), "mask": jnp.ones(64)}
    exact = jax.jit(dsteps.make_vlb(apply, s, prediction="eps", timesteps=0))
    est = jax.jit(dsteps.make_vlb(apply, s, prediction="eps", timesteps=5))
    ref = np.mean([exact(None, batch, jax.random.key(i))["nll_bound"] for i in range(4)]) / 64
    runs = [est(None, batch, jax.random.key(100 + i)) for i in range(40)]
    vals = np.array([r["nll_bound"] / 64 for r in runs])
    assert abs(vals.mean() - ref) < 4 * vals.std() / np.sqrt(len(vals)) + 1e-3 * abs(ref), (vals.mean(), ref)


def _gaussian_oracle(schedule, mu, s):
    """The exact ε-predictor for data N(mu, s²) per pixel:
    E[ε | x_t] = b (x_t - a mu) / (a² s² + b²), a = sqrt(ᾱ), b = sqrt(1 - ᾱ)."""
    def apply(params, x, t, labels=None):
        abar = jnp.asarray(schedule.alphas_cumprod, jnp.float32)[t][:, None, None, None]
        a, b = jnp.sqrt(abar), jnp.sqrt(1 - abar)
        return b * (x - a * mu) / (a * a * s * s + b * b)
    return apply


@pytest.mark.parametrize("sampler,steps,kw,tol", [
    ("ddpm", 1000, {"variance": "small"}, 0.02), ("ddpm", 1000, {"variance": "large"}, 0.03),
    ("ddim", 100, {"eta": 0.0}, 0.02), ("ddim", 100, {"eta": 1.0}, 0.03),
    ("dpm++2m", 100, {}, 0.02)])
def test_samplers_draw_the_data_distribution_with_the_exact_denoiser(sampler, steps, kw, tol):
    """Gaussian data N(0.3, 0.2²): every sampler, fed its exact denoiser, returns samples
    with that mean and standard deviation."""
    s = D.make_schedule("linear", 1000)
    draw = dsteps.make_sampler(_gaussian_oracle(s, 0.3, 0.2), s, sampler=sampler, steps=steps,
                               prediction="eps", clip=False, **kw)
    x, _ = jax.jit(lambda k: draw(None, k, (4096, 2, 2, 1)))(jax.random.key(0))
    assert abs(float(x.mean()) - 0.3) < tol and abs(float(x.std()) - 0.2) < tol, (x.mean(), x.std())


def test_ddim_is_first_order_and_dpm_solver_second_order_on_the_flow_ode():
    """For data N(0.3, 1) the probability-flow ODE maps x_T to 0.3 + (x_T - a_T 0.3) /
    sqrt(a_T² + b_T²) exactly. Doubling the steps from 40 to 80 halves DDIM's error (first
    order) and quarters DPM-Solver++(2M)'s (second order); measured 2.0 and 4.3."""
    s = D.make_schedule("linear", 1000)
    key = jax.random.key(0)
    x_T = jax.random.normal(jax.random.split(key)[0], (1024, 2, 2, 1))
    a_T = s.alphas_cumprod[-1]
    exact = 0.3 + (x_T - np.sqrt(a_T) * 0.3) / np.sqrt(a_T + 1 - a_T)

    def error(sampler, steps):
        draw = dsteps.make_sampler(_gaussian_oracle(s, 0.3, 1.0), s, sampler=sampler,
                                   steps=steps, prediction="eps", clip=False)
        return float(jnp.sqrt(jnp.mean((jax.jit(lambda k: draw(None, k, x_T.shape))(key)[0]
                                        - exact) ** 2)))

    assert 1.8 < error("ddim", 40) / error("ddim", 80) < 2.2
    assert error("dpm++2m", 40) / error("dpm++2m", 80) > 3.5


def test_guidance_combines_conditional_and_unconditional_outputs():
    s = D.make_schedule("linear", 30)
    apply = lambda p, x, t, labels: jnp.where(labels == 3, 1.0, 0.25)[:, None, None, None] * jnp.ones_like(x)
    denoise = dsteps.guided_denoiser(apply, s, prediction="eps", num_classes=3, guidance=2.0,
                                     clip=False)
    _, eps = denoise(None, jnp.zeros((2, 1, 1, 1)), jnp.int32(5), jnp.array([0, 1]))
    np.testing.assert_allclose(eps, (1 + 2.0) * 0.25 - 2.0 * 1.0)


def test_trajectory_starts_at_noise_and_ends_at_the_sample():
    s = D.make_schedule("linear", 100)
    draw = dsteps.make_sampler(_gaussian_oracle(s, 0.0, 0.5), s, sampler="ddim", steps=20,
                               prediction="eps", clip=False, trajectory=5)
    x, states = draw(None, jax.random.key(3), (2, 2, 2, 1))
    assert states.shape == (5, 2, 2, 2, 1)
    chex.assert_trees_all_close(states[-1], x)
    start_key, _ = jax.random.split(jax.random.key(3))
    chex.assert_trees_all_close(states[0], jax.random.normal(start_key, (2, 2, 2, 1)))


def test_unet_shapes_time_embedding_and_labels():
    from genjax.nn.diffusion import UNet, timestep_embedding

    emb = timestep_embedding(jnp.array([0, 7]), 8)
    freqs = 10000.0 ** (-np.arange(4) / 4)
    np.testing.assert_allclose(emb[1], np.concatenate([np.cos(7 * freqs), np.sin(7 * freqs)]),
                               rtol=1e-6)
    for size in (28, 32):  # shapes only: 28 -> 14 -> 7 -> back, 32 -> 16 -> 8 -> back
        x = jax.ShapeDtypeStruct((2, size, size, 1), jnp.float32)
        t = jax.ShapeDtypeStruct((2,), jnp.int32)
        net = UNet(8, (1, 2, 2), 1, True)
        params = jax.eval_shape(net.init, jax.random.key(0), x, t)
        assert jax.eval_shape(net.apply, params, x, t).shape == x.shape
    net = UNet(8, (1, 2), 1, True, num_classes=10)
    x = jax.random.normal(jax.random.key(0), (2, 28, 28, 1))
    shapes = jax.eval_shape(net.init, jax.random.key(1), x, jnp.array([1, 2]), jnp.array([0, 1]))
    params = _randomised(shapes["params"], np.random.default_rng(1))  # no layer left at zero
    apply = jax.jit(lambda labels: net.apply({"params": params}, x, jnp.array([1, 2]), labels))
    a, b = apply(jnp.array([0, 1])), apply(jnp.array([10, 1]))  # "no label" for the first
    assert a.shape == x.shape
    assert not np.allclose(a[0], b[0]) and np.allclose(a[1], b[1])


def test_config_trains_and_scores(data_dir, tmp_path):
    """The `:test` config trains 4 steps through the real loop and leaves the bound in
    bits/dim (with its standard error), the domain metrics, and the sample and
    trajectory grids."""
    import json

    from genjax import loop

    state = loop.train_and_evaluate(short_run_config("ddpm_mnist", data_dir), str(tmp_path))
    assert int(state.step) == 4 and "ema" in state.extra
    assert (tmp_path / "samples.png").exists() and (tmp_path / "trajectory.png").exists()
    from PIL import Image

    from genjax.tasks.diffusion import TRAJECTORY_IMAGES
    height = Image.open(tmp_path / "trajectory.png").height  # drawn at 2x, 1-pixel borders
    assert height == 2 * (TRAJECTORY_IMAGES * 29 + 1)  # one row per image, at any sample_steps
    final = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")][-1]
    assert np.isfinite(final["test/domain_fid"]) and 0 < final["test/bits_per_dim"] < 20, final
    assert final["test/bits_per_dim_stderr"] > 0


@pytest.mark.slow(seconds=170)  # on 2 cores
def test_conditional_config_resumes_exactly_and_evaluates_with_other_samplers(
        data_dir, tmp_path, capsys):
    """The conditional `:test` config (label dropout, guidance, EMA): with its step-4
    checkpoint removed, the same run resumes from step 2 and ends bitwise equal; loaded
    with `genjax.runs.load` it reproduces its final FID and bound, and its export (EMA
    weights) its samples; then `genjax-evaluate` scores it with another sampler and
    guidance scale."""
    from genjax.cli import evaluate as evaluate_cli

    final = check_resumes_exactly(short_run_config("ddpm_mnist_cond", data_dir), tmp_path, capsys)
    check_loaded_run(tmp_path, final, "test/nll_bound", tmp_path=tmp_path)  # EMA weights
    scores = evaluate_cli.evaluate_run(str(tmp_path), 50, sampling={
        "sampler": "dpm++2m", "sample_steps": 3, "guidance": 2.0})
    assert np.isfinite(scores["test/domain_dpm++2m3_w2_n50_fid"]), scores  # not eval_samples
    assert 0 <= scores["test/domain_dpm++2m3_w2_n50_class_accuracy"] <= 1  # same samples'
    assert len([k for k in scores if "class_accuracy_" in k]) == 10


def test_sampler_grid_entries_parse_or_say_what_is_wrong():
    from benchmarks.diffusion_samplers import parse_grid

    assert parse_grid(["ddim:10", "ddpm:50:small"]) == [("ddim", 10, None), ("ddpm", 50, "small")]
    for bad in ("ddim", "ddim:0", "ddim:x", "ddpm:50:small:1", "ddim:10:small", "ddpm:50:",
                "ddpm:50:huge"):
        with pytest.raises(ValueError, match="must be sampler:steps"):
            parse_grid([bad])


def _randomised(shapes, rng: np.random.Generator):
    """Random arrays of the ``shapes`` (so that no layer is zero, as some start at
    initialisation); drawn by NumPy, not op by op in eager JAX (a compile per shape)."""
    return jax.tree.map(lambda s: (0.3 * rng.standard_normal(s.shape)).astype(np.float32), shapes)


def _layer_paths(model, *args) -> tuple[dict, list[tuple[str, ...]]]:
    """The parameter shapes of ``model`` and its layers' paths in the order it calls them,
    traced abstractly (nothing compiled; a parameter dict from any traced init has its keys
    sorted, not in call order)."""
    import flax.linen as nn

    paths = []

    def record(next_fun, call_args, kwargs, context):
        if isinstance(context.module, (nn.Conv, nn.Dense, nn.GroupNorm, nn.Embed)) and \
                context.module.path not in paths:
            paths.append(context.module.path)
        return next_fun(*call_args, **kwargs)

    with nn.intercept_methods(record):
        shapes = jax.eval_shape(model.init, jax.random.key(0), *args)["params"]
    return shapes, paths


@pytest.mark.parametrize("num_classes", [0, 10])
def test_pytorch_reference_unet_is_the_same_function(num_classes):
    """The benchmark's PyTorch peer (benchmarks/torch_reference.py) is the same network:
    genjax's parameters loaded into it give the same outputs."""
    torch = pytest.importorskip("torch")
    from benchmarks import torch_reference as ref

    model = UNet(channels=8, channel_mult=(1, 2), num_classes=num_classes, groups=4)
    x = jax.random.normal(jax.random.key(0), (3, 28, 28, 1))
    t, labels = jnp.array([0, 400, 999]), jnp.array([1, 10, 3])  # 10: no label
    args = (x, t, labels if num_classes else None)
    shapes, paths = _layer_paths(model, *args)
    params = _randomised(shapes, np.random.default_rng(2))
    peer = ref.UNet(8, (1, 2), 1, True, num_classes, 4)
    layers = [m for m in peer.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear,
                                                         torch.nn.GroupNorm, torch.nn.Embedding))]
    flax_layers = [functools.reduce(dict.get, path, params) for path in paths]
    assert len(layers) == len(flax_layers)
    with torch.no_grad():
        for m, p in zip(layers, flax_layers):
            copy_flax_layer(m, p)
        ours = jax.jit(model.apply)({"params": params}, *args)
        theirs = peer(torch.from_numpy(np.array(x).transpose(0, 3, 1, 2)),
                      torch.from_numpy(np.array(t)),
                      torch.from_numpy(np.array(labels)) if num_classes else None)
    np.testing.assert_allclose(theirs.numpy().transpose(0, 2, 3, 1), ours, atol=2e-5, rtol=1e-4)


def test_unet_profile_sums_operation_kinds_and_their_covered_wall_time():
    """benchmarks.unet_profile: per-kind sums per call, and the union of overlapping
    events (two threads) counted once."""
    from benchmarks.unet_profile import _CALLS, op_kinds

    op = lambda name, ts, dur: {"ph": "X", "name": name, "ts": ts, "dur": dur,
                                "args": {"hlo_op": name}}
    events = [op("transpose_copy_fusion.3", 0, 3000 * _CALLS),
              op("transpose_copy_fusion.7", 1000, 1000 * _CALLS),
              op("convolution.2", 10**7, 1000 * _CALLS),
              {"ph": "X", "name": "ThunkExecutor::Execute", "ts": 0, "dur": 10**8},  # no op
              {"ph": "M", "name": "thread_name"}]
    kinds, covered = op_kinds({"traceEvents": events})
    assert kinds == {"transpose_copy_fusion": pytest.approx(4.0), "convolution": pytest.approx(1.0)}
    assert covered == pytest.approx(4.0)  # 3 of overlap-merged transposes + 1 of convolution
