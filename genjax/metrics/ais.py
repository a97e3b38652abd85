"""Annealed importance sampling for RBMs: forward AIS estimates of log Z (Neal 2001;
Salakhutdinov & Murray 2008) and reverse annealing from each test digit (RAISE, Burda,
Grosse & Salakhutdinov 2015): together a bracket on the test log-likelihood.

Every estimator takes a plain RBM (`genjax.losses.rbm.to_plain` a centered one first).
AIS anneals the marginal over the hidden units between the base-rate model (visible
biases ``base_bias`` from the data's marginals, no weights; uniform over h) and the RBM:
log f_beta(h) = beta c^T h + sum_i softplus(beta (b + W h)_i + (1 - beta) base_bias_i),
whose normaliser at beta = 0 is Z_0 = 2^H prod_i (1 + exp(base_bias_i)).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from genjax.losses import rbm as L
from genjax.nn.rbm import bernoulli

# Salakhutdinov & Murray's schedule: 500 betas in [0, 0.5), 4,000 in [0.5, 0.9) and 10,000
# in [0.9, 1]: (start, end, share of the temperatures).
SCHEDULE_STAGES = ((0.0, 0.5, 500 / 14500), (0.5, 0.9, 4000 / 14500), (0.9, 1.0, 10000 / 14500))


def base_rate_bias(marginals: jax.Array, smoothing: float = 1e-3) -> jax.Array:
    """The base-rate model's visible biases: the logits of the data's pixel marginals,
    clipped to [smoothing, 1 - smoothing] (a never-inked pixel keeps a finite bias)."""
    p = jnp.clip(marginals, smoothing, 1.0 - smoothing)
    return jnp.log(p) - jnp.log1p(-p)


def betas(num: int) -> np.ndarray:
    """``num`` + 1 inverse temperatures from 0 to 1 in Salakhutdinov & Murray's three
    stages (shares 500 : 4,000 : 10,000 of ``num``)."""
    if num < 3:
        raise ValueError(f"AIS needs at least 3 intermediate temperatures, got {num}.")
    counts = [max(1, int(round(share * num))) for _, _, share in SCHEDULE_STAGES]
    counts[-1] = num - sum(counts[:-1])
    parts = [np.linspace(lo, hi, k, endpoint=False) for (lo, hi, _), k in zip(SCHEDULE_STAGES, counts)]
    return np.concatenate(parts + [np.ones(1)]).astype(np.float32)


def log_f(params: L.Params, base_bias: jax.Array, h: jax.Array, beta: jax.Array,
          pre: jax.Array | None = None) -> jax.Array:
    """log f_beta(h) per row of ``h``: the annealed path's unnormalised hidden marginal.
    ``pre``: b + W h when already computed (the annealing loops share it between the
    weights and the next sweep)."""
    pre = params["b"] + h @ params["W"].T if pre is None else pre
    return beta * (h @ params["c"]) + jnp.sum(
        jax.nn.softplus(beta * pre + (1.0 - beta) * base_bias), -1)


def log_z_base(base_bias: jax.Array, hidden: int) -> jax.Array:
    """log Z_0 = H log 2 + sum_i softplus(base_bias_i)."""
    return hidden * jnp.log(2.0) + jnp.sum(jax.nn.softplus(base_bias))


def _sweep(params, base_bias, h, pre, beta, key):
    """One Gibbs sweep h -> v -> h' at ``beta`` (it leaves p_beta(h) invariant and is
    reversible), from h and its ``pre`` = b + W h; returns h' and its own pre."""
    v_key, h_key = jax.random.split(key)
    v = bernoulli(v_key, jax.nn.sigmoid(beta * pre + (1.0 - beta) * base_bias))
    h = bernoulli(h_key, L.hidden_probs(params, v, beta))
    return h, params["b"] + h @ params["W"].T


def _anneal(params, base_bias, h, schedule, key, *, sweep_first: bool):
    """Run the chains ``h`` along ``schedule`` (betas s_0, ..., s_K) and return each chain's
    summed log f_{s_{k+1}}(h) - log f_{s_k}(h). Forward AIS (``sweep_first`` False) weighs
    h then sweeps at s_{k+1}; reverse annealing sweeps at s_k first, then weighs. Each
    step costs two products with W: the one behind a weight also drives the next sweep."""

    def weigh(h, pre, k):
        return (log_f(params, base_bias, h, schedule[k + 1], pre)
                - log_f(params, base_bias, h, schedule[k], pre))

    def body(carry, k):
        h, pre, log_w = carry
        step_key = jax.random.fold_in(key, k)
        if sweep_first:
            h, pre = _sweep(params, base_bias, h, pre, schedule[k], step_key)
            return (h, pre, log_w + weigh(h, pre, k)), None
        log_w = log_w + weigh(h, pre, k)
        h, pre = _sweep(params, base_bias, h, pre, schedule[k + 1], step_key)
        return (h, pre, log_w), None

    pre = params["b"] + h @ params["W"].T
    carry = (h, pre, jnp.zeros(h.shape[0]))
    (_, _, log_w), _ = jax.lax.scan(body, carry, jnp.arange(len(schedule) - 1))
    return log_w


def ais_log_z(params: L.Params, base_bias: jax.Array, schedule: jax.Array, runs: int,
              key: jax.Array) -> dict[str, jax.Array]:
    """Forward AIS: ``runs`` chains start from the base model (h uniform) and anneal to the
    RBM. Returns ``log_z`` = log Z_0 + log mean w (unbiased in Z, so log Z is
    underestimated on average and the log-likelihood over-), and ``log_z_low`` /
    ``log_z_high``: log(mean w -/+ 3 standard errors) as in Salakhutdinov & Murray
    (``log_z_low`` is -inf when the spread exceeds the mean)."""
    start_key, key = jax.random.split(key)
    hidden = params["W"].shape[1]
    h = bernoulli(start_key, jnp.full((runs, hidden), 0.5))
    log_w = _anneal(params, base_bias, h, schedule, key, sweep_first=False)
    shift = jnp.max(log_w)
    w = jnp.exp(log_w - shift)
    mean, err = jnp.mean(w), 3.0 * jnp.std(w, ddof=1) / jnp.sqrt(runs)
    base = log_z_base(base_bias, hidden) + shift
    return {"log_z": base + jnp.log(mean), "log_z_high": base + jnp.log(mean + err),
            "log_z_low": base + jnp.where(mean > err, jnp.log(jnp.maximum(mean - err, 1e-30)),
                                          -jnp.inf),
            "log_w": log_w}


def reverse_ais_log_likelihood(params: L.Params, base_bias: jax.Array, schedule: jax.Array,
                               v: jax.Array, key: jax.Array) -> jax.Array:
    """Per row of ``v``, a stochastic lower bound on log p(v) by reverse annealing (RAISE,
    Burda et al. 2015): h_K ~ p(h | v) exactly, then sweeps at beta_K, ..., beta_1 back to
    the base model, accumulating log f_{k-1}(h) - log f_k(h); the estimate is
    -F(v) - log Z_0 - (that sum). Its expectation is at most log p_ann(v), the likelihood
    of the annealed model, which tends to p(v) as the schedule gets finer."""
    start_key, key = jax.random.split(key)
    h = bernoulli(start_key, L.hidden_probs(params, v))
    log_w = _anneal(params, base_bias, h, schedule[::-1], key, sweep_first=True)
    hidden = params["W"].shape[1]
    return -L.free_energy(params, v) - log_z_base(base_bias, hidden) + log_w
