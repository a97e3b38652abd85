"""RBMs: energies, conditionals and log Z against enumeration; CD's gradient against the
exact one; Gibbs chains against the exact distribution (chi-squared); AIS and reverse AIS
against the exact log-likelihood; scikit-learn's pseudo-likelihood; training, resume and
the persistent chains through the loop."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import check_loaded_run, check_resumes_exactly, short_run_config
from scipy import stats

from genjax.losses import rbm as L
from genjax.metrics import ais as A
from genjax.nn import rbm as R

jax.config.update("jax_enable_x64", False)


def _states(n: int) -> jnp.ndarray:
    """All 2^n binary vectors [2^n, n]."""
    return jnp.asarray(list(itertools.product([0.0, 1.0], repeat=n)), jnp.float32)


def _rbm(key, d: int, h: int, scale: float = 1.0) -> L.Params:
    k1, k2, k3 = jax.random.split(jax.random.key(key), 3)
    return {"W": scale * jax.random.normal(k1, (d, h)), "b": jax.random.normal(k2, (d,)),
            "c": jax.random.normal(k3, (h,))}


def _offsets(key, d: int, h: int) -> L.Offsets:
    k1, k2 = jax.random.split(jax.random.key(key))
    return {"visible": jax.random.uniform(k1, (d,)), "hidden": jax.random.uniform(k2, (h,))}


def _log_joint(params, offsets=None):
    """-E(v, h) for every (v, h) [2^D, 2^H]."""
    d, h = params["W"].shape
    vs, hs = _states(d), _states(h)
    v = jnp.repeat(vs, len(hs), 0)
    hh = jnp.tile(hs, (len(vs), 1))
    return -L.energy(params, v, hh, offsets).reshape(len(vs), len(hs))


def _log_p_visible(params):
    joint = _log_joint(params)
    return jax.nn.logsumexp(joint, 1) - jax.nn.logsumexp(joint)


@pytest.mark.parametrize("centered", [False, True])
def test_free_energy_and_log_z_equal_enumeration_and_centering_keeps_the_distribution(centered):
    params = _rbm(0, 6, 5)
    offsets = _offsets(1, 6, 5) if centered else None
    joint = _log_joint(params, offsets)
    f = L.free_energy(params, _states(6), offsets)
    np.testing.assert_allclose(f, -jax.nn.logsumexp(joint, 1), rtol=1e-5, atol=1e-5)
    plain = L.to_plain(params, offsets or L.zero_offsets(params))
    # The plain RBM of a centered one has the same p(v): log Z differs by the same constant as F.
    f_plain = L.free_energy(plain, _states(6))
    np.testing.assert_allclose(f - f_plain, (f - f_plain)[0] * np.ones(64), atol=1e-5)
    np.testing.assert_allclose(L.log_z_exact(plain, chunk=8), jax.nn.logsumexp(_log_joint(plain)),
                               rtol=1e-6)


def test_gibbs_conditionals_match_the_joint():
    params = _rbm(2, 4, 3)
    joint = jnp.exp(_log_joint(params))                                 # [16 v, 8 h]
    vs, hs = _states(4), _states(3)
    p_h_given_v = joint / joint.sum(1, keepdims=True)
    p_hj = (p_h_given_v @ hs)                                           # P(h_j = 1 | v)
    np.testing.assert_allclose(L.hidden_probs(params, vs), p_hj, rtol=1e-5, atol=1e-6)
    p_v_given_h = joint / joint.sum(0, keepdims=True)
    np.testing.assert_allclose(jax.nn.sigmoid(L.visible_logits(params, hs)), p_v_given_h.T @ vs,
                               rtol=1e-5, atol=1e-6)


def test_gibbs_chains_reach_the_exact_distribution_chi_squared():
    """8,000 independent chains of 200 sweeps on a 3x2 RBM: the final states' counts fit
    the exact p(v) (chi-squared p > 0.001), and a far-off distribution is rejected."""
    params = _rbm(3, 3, 2, scale=1.5)
    n = 8000
    v0 = jnp.zeros((n, 3))
    v, _ = jax.jit(R.gibbs_chain, static_argnums=3)(params, v0, jax.random.key(4), 200)
    index = np.asarray(v @ jnp.array([4.0, 2.0, 1.0])).astype(int)
    counts = np.bincount(index, minlength=8)
    expected = n * np.exp(np.asarray(_log_p_visible(params), np.float64))
    assert stats.chisquare(counts, expected * n / expected.sum()).pvalue > 1e-3
    uniform = np.full(8, n / 8)
    assert stats.chisquare(counts, uniform).pvalue < 1e-6


def _exact_gradient(params, data):
    """d/dtheta of the mean log p(data) by enumeration: -<dF>_data + <dF>_model."""
    vs = _states(params["W"].shape[0])
    p = jnp.exp(_log_p_visible(params))
    mean_f = lambda q, x, w: jnp.sum(w * L.free_energy(q, x))  # noqa: E731
    g_data = jax.grad(mean_f)(params, data, jnp.full(len(data), 1 / len(data)))
    g_model = jax.grad(mean_f)(params, vs, p)
    return jax.tree.map(lambda a, b: b - a, g_data, g_model)


def test_cd_gradient_approaches_the_exact_gradient_as_k_grows():
    """CD-k's estimate (minus `cd_loss`'s gradient) with 20,000 chains from the data: far
    from the exact log-likelihood gradient at k = 1, within Monte-Carlo error at k = 100."""
    params = _rbm(5, 5, 4, scale=1.0)
    data = _states(5)[jnp.array([3, 7, 12, 30, 31, 17])]
    exact = _exact_gradient(params, data)
    start = jnp.tile(data, (20000 // len(data) + 1, 1))[:20000]

    def error(k):
        neg = R.gibbs_chain(params, start, jax.random.key(k), k)[0]
        g = jax.grad(L.cd_loss)(params, L.zero_offsets(params), data, neg)
        est = jax.tree.map(lambda x: -x, g)
        return max(float(jnp.max(jnp.abs(est[n] - exact[n]))) for n in exact)

    e1, e100 = error(1), error(100)
    assert e100 < 0.03, e100
    assert e1 > 4 * e100, (e1, e100)


def test_centered_gradient_is_the_free_energy_difference_and_offsets_shift_without_changing_p():
    from genjax.steps import rbm as rsteps

    params, offsets = _rbm(6, 5, 4), _offsets(7, 5, 4)
    data = _states(5)[::3]
    new_params, new_offsets = rsteps.shift_offsets(params, offsets, data, 0.3, None)
    assert not np.allclose(new_offsets["visible"], offsets["visible"])
    before = L.free_energy(params, _states(5), offsets)
    after = L.free_energy(new_params, _states(5), new_offsets)
    np.testing.assert_allclose(after - before, (after - before)[0] * np.ones(32), atol=1e-5)
    # Melchior et al.'s centered weight gradient: <(v - mu)(h - lam)^T>, h ~ p(h|v) summed out.
    g = jax.grad(lambda p: jnp.mean(L.free_energy(p, data, offsets)))(params)
    a = params["c"] + (data - offsets["visible"]) @ params["W"]
    want = -((data - offsets["visible"]).T @ (jax.nn.sigmoid(a) - offsets["hidden"])) / len(data)
    np.testing.assert_allclose(g["W"], want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("centered", [False, True])
def test_closed_form_cd_gradient_equals_autodiff_of_the_surrogate(centered):
    params = _rbm(11, 6, 4)
    offsets = _offsets(12, 6, 4) if centered else L.zero_offsets(params)
    data, negatives = _states(6)[::5], _states(6)[1::3]
    loss, grads, free = L.cd_gradient(params, offsets, data, negatives)
    want_loss, want = jax.value_and_grad(L.cd_loss)(params, offsets, data, negatives)
    np.testing.assert_allclose(loss, want_loss, rtol=1e-5, atol=1e-5)
    for name in want:
        np.testing.assert_allclose(grads[name], want[name], rtol=1e-5, atol=1e-6)
    plain = L.to_plain(params, offsets)
    np.testing.assert_allclose(free, jnp.mean(L.free_energy(plain, data)), rtol=1e-5, atol=1e-5)


def _trained_like(key, d=16, h=10):
    """An RBM with weights large enough to make AIS work for its answer."""
    return _rbm(key, d, h, scale=0.7)


def test_ais_lands_on_the_exact_log_z_and_tightens_with_more_temperatures():
    params = _trained_like(8)
    exact = float(L.log_z_exact(params))
    base = A.base_rate_bias(jnp.full((16,), 0.3))
    run = jax.jit(A.ais_log_z, static_argnums=3)
    few = run(params, base, jnp.asarray(A.betas(30)), 200, jax.random.key(0))
    many = run(params, base, jnp.asarray(A.betas(1000)), 200, jax.random.key(1))
    assert abs(float(many["log_z"]) - exact) < 0.1, (float(many["log_z"]), exact)
    assert float(many["log_z_low"]) <= exact + 0.05 and exact - 0.05 <= float(many["log_z_high"])
    assert np.std(few["log_w"]) > 3 * np.std(many["log_w"])


def test_reverse_ais_is_below_the_exact_log_likelihood_and_close_with_enough_temperatures():
    params = _trained_like(9)
    vs = _states(16)
    exact_lp = -L.free_energy(params, vs) - L.log_z_exact(params)
    v = vs[jax.random.choice(jax.random.key(2), len(vs), (200,), p=jnp.exp(exact_lp))]
    base = A.base_rate_bias(jnp.mean(v, 0))
    exact = float(jnp.mean(exact_lp[(v @ (2.0 ** jnp.arange(15, -1, -1))).astype(int)]))
    run = jax.jit(A.reverse_ais_log_likelihood)
    few = float(jnp.mean(run(params, base, jnp.asarray(A.betas(10)), v, jax.random.key(3))))
    many = float(jnp.mean(run(params, base, jnp.asarray(A.betas(1000)), v, jax.random.key(4))))
    assert few < many - 0.1, (few, many)
    assert exact - 0.15 < many < exact + 0.05, (many, exact)


def test_pseudo_likelihood_equals_enumeration_and_scikit_learns_score_samples():
    from sklearn.neural_network import BernoulliRBM

    params = _rbm(10, 6, 4)
    vs = _states(6)
    log_p = _log_p_visible(params)
    want = []
    for i in range(len(vs)):  # sum_i log p(v_i | v_-i) from the enumerated p(v)
        total = 0.0
        for bit in range(6):
            j = i ^ (1 << (5 - bit))
            total += float(log_p[i] - jnp.logaddexp(log_p[i], log_p[j]))
        want.append(total)
    np.testing.assert_allclose(L.pseudo_likelihood(params, vs), want, rtol=1e-5, atol=1e-5)
    rbm = BernoulliRBM(n_components=4, random_state=5)
    rbm.components_ = np.asarray(params["W"]).T.astype(np.float64)
    rbm.intercept_hidden_ = np.asarray(params["c"], np.float64)
    rbm.intercept_visible_ = np.asarray(params["b"], np.float64)
    theirs = rbm.score_samples(np.asarray(vs, np.float64))
    bits = np.random.RandomState(5).randint(0, 6, len(vs))  # score_samples' own draw
    ours = L.sklearn_pseudo_likelihood(params, vs, jnp.asarray(bits))
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-4)


def test_betas_follow_the_three_stages():
    b = A.betas(14500)
    assert len(b) == 14501 and b[0] == 0 and b[-1] == 1 and np.all(np.diff(b) > 0)
    assert np.sum(b < 0.5) == 500 and np.sum((b >= 0.5) & (b < 0.9)) == 4000
    with pytest.raises(ValueError, match="at least 3"):
        A.betas(2)


@pytest.mark.parametrize("name", ["rbm_centered_mnist",
                                  pytest.param("dbn_mnist", marks=pytest.mark.slow(seconds=20))])
def test_config_trains_resumes_exactly_and_scores(name, data_dir, tmp_path, capsys):
    """The `:test` variants train 4 steps through the loop (the DBN: two on each layer);
    with the step-4 checkpoint removed the run resumes from step 2 and ends bitwise
    equal, persistent chains and offsets included; the RBM's evaluation brackets its
    exact log-likelihood (16 hidden units: enumerable) between reverse and forward AIS."""
    c = short_run_config(name, data_dir)
    final = check_resumes_exactly(c, tmp_path, capsys)
    assert np.isfinite(final["test/free_energy_gap"]) and final["test/pseudo_likelihood"] < 0
    assert np.isfinite(final["test/domain_fid"])
    if name == "dbn_mnist":
        assert "test/ais_log_likelihood" not in final
        check_loaded_run(tmp_path, final, None)  # a deep belief net: no likelihood
        return
    exact = final["test/exact_log_likelihood"]
    high = final.get("test/ais_log_likelihood_high", np.inf)  # absent: the band is unbounded
    assert final["test/reverse_ais_log_likelihood"] - 3 * final[
        "test/reverse_ais_log_likelihood_stderr"] < exact < high
    assert abs(final["test/ais_log_likelihood"] - exact) < 1.0, final
    check_loaded_run(tmp_path, final, "test/ais_log_likelihood", sign=1.0, tmp_path=tmp_path)
    grids = {p.name.split("_")[0] for p in (tmp_path / "samples").iterdir()}
    assert {"filters", "samples", "reconstructions"} <= grids, grids
