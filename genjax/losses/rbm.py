"""The RBM's energy and objectives as pure functions of arrays.

A Bernoulli-Bernoulli RBM over visible units v in {0, 1}^D and hidden units h in {0, 1}^H
has the energy

    E(v, h) = -(v - mu)^T W (h - lam) - b^T (v - mu) - c^T (h - lam)

with ``params = {"W": [D, H], "b": [D], "c": [H]}`` and ``offsets = {"visible": mu,
"hidden": lam}``. The offsets are zero for the plain RBM; the centered RBM (Melchior,
Fischer & Wiskott 2016) keeps them near the data mean and the mean hidden activation,
which changes the gradient's conditioning but not the family of distributions: every
centered RBM equals the plain RBM of `to_plain` (same p(v, h)), so sampling, the
partition function and every likelihood estimate work on the plain form.

The hidden units sum out in closed form, giving the free energy
F(v) = -b^T (v - mu) - sum_j [softplus(a_j) - lam_j a_j],  a = c + W^T (v - mu),
with p(v) = exp(-F(v)) / Z. Here also: `cd_loss`, the contrastive-divergence surrogate
whose gradient is the CD-k / PCD estimate of minus the log-likelihood gradient;
`pseudo_likelihood` (every bit flipped) and `sklearn_pseudo_likelihood` (scikit-learn's
one-random-bit form); `log_z_exact` by enumeration; `cd_gradient`, the surrogate's
gradient in closed form. Sampling is in `genjax.nn.rbm`, AIS
in `genjax.metrics.ais`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

Params = dict[str, jax.Array]
Offsets = dict[str, jax.Array]


def zero_offsets(params: Params) -> Offsets:
    """The plain RBM's offsets: mu = 0, lam = 0."""
    d, h = params["W"].shape
    return {"visible": jnp.zeros((d,)), "hidden": jnp.zeros((h,))}


def to_plain(params: Params, offsets: Offsets) -> Params:
    """The plain RBM with the same distribution as the centered one: W unchanged,
    b' = b - W lam, c' = c - W^T mu (the energies differ by a constant)."""
    w = params["W"]
    return {"W": w, "b": params["b"] - w @ offsets["hidden"],
            "c": params["c"] - offsets["visible"] @ w}


def energy(params: Params, v: jax.Array, h: jax.Array, offsets: Offsets | None = None
           ) -> jax.Array:
    """E(v, h) per row of ``v`` [N, D] and ``h`` [N, H]."""
    o = offsets or zero_offsets(params)
    vc, hc = v - o["visible"], h - o["hidden"]
    return (-jnp.sum((vc @ params["W"]) * hc, -1) - vc @ params["b"] - hc @ params["c"])


def free_energy(params: Params, v: jax.Array, offsets: Offsets | None = None) -> jax.Array:
    """F(v) = -log sum_h exp(-E(v, h)) per row of ``v`` [N, D]."""
    o = offsets or zero_offsets(params)
    vc = v - o["visible"]
    a = params["c"] + vc @ params["W"]
    return -vc @ params["b"] - jnp.sum(jax.nn.softplus(a) - o["hidden"] * a, -1)


def hidden_probs(params: Params, v: jax.Array, beta: float | jax.Array = 1.0) -> jax.Array:
    """p(h_j = 1 | v) of a plain RBM (``to_plain`` first), with the energy scaled by
    ``beta`` (the annealed chains of AIS)."""
    return jax.nn.sigmoid(beta * (params["c"] + v @ params["W"]))


def visible_logits(params: Params, h: jax.Array) -> jax.Array:
    """The logits of p(v_i = 1 | h) of a plain RBM: b + W h."""
    return params["b"] + h @ params["W"].T


def reconstruction(params: Params, v: jax.Array) -> jax.Array:
    """p(v' = 1 | h) at h = p(h | v), mean field both ways (a plain RBM's reconstruction
    of ``v``)."""
    return jax.nn.sigmoid(visible_logits(params, hidden_probs(params, v)))


def log_z_exact(params: Params, chunk: int = 4096) -> jax.Array:
    """log Z of a plain RBM by enumerating the 2^H hidden states (H up to about 24):
    log Z = logsumexp_h [c^T h + sum_i softplus(b_i + (W h)_i)]."""
    h_units = params["W"].shape[1]
    if h_units > 26:
        raise ValueError(f"Enumerating 2^{h_units} hidden states is out of reach; use AIS.")
    n = 2 ** h_units
    chunk = min(chunk, n)
    bits = jnp.arange(h_units, dtype=jnp.uint32)

    def block(start):
        idx = start + jnp.arange(chunk, dtype=jnp.uint32)
        h = ((idx[:, None] >> bits) & 1).astype(params["W"].dtype)
        return jax.nn.logsumexp(h @ params["c"] + jnp.sum(
            jax.nn.softplus(params["b"] + h @ params["W"].T), -1))

    starts = jnp.arange(0, n, chunk, dtype=jnp.uint32)
    return jax.nn.logsumexp(jax.lax.map(block, starts))


def cd_loss(params: Params, offsets: Offsets, data: jax.Array, negatives: jax.Array
            ) -> jax.Array:
    """mean F(data) - mean F(negatives), the negatives held fixed.

    Its gradient is <dE/dtheta>_data - <dE/dtheta>_negatives with p(h | v) summed out
    exactly: minus the CD-k (negatives from k Gibbs sweeps started at the data) or PCD
    (from persistent chains) estimate of the log-likelihood gradient. Under centering
    the same expression gives the centered gradient (Melchior et al. 2016, eq. 11-13).
    """
    negatives = jax.lax.stop_gradient(negatives)
    return (jnp.mean(free_energy(params, data, offsets))
            - jnp.mean(free_energy(params, negatives, offsets)))


def cd_gradient(params: Params, offsets: Offsets | None, data: jax.Array, negatives: jax.Array
                ) -> tuple[jax.Array, Params, jax.Array]:
    """`cd_loss`, its gradient in closed form, and the mean free energy of ``data`` in the
    plain RBM's terms (comparable across centerings): (loss, grads, free energy).
    ``offsets`` None: the plain RBM (zero offsets, skipped).

    dF/dW = -(v - mu)^T (sigmoid(a) - lam), dF/db = -(v - mu), dF/dc = -(sigmoid(a) - lam)
    with a = c + W^T (v - mu). Data and negatives go through W together: one product
    for their pre-activations and one for the weight gradient (what autodiff of
    `cd_loss` takes four for), which is most of a small-batch step's time.
    """
    n, m = data.shape[0], negatives.shape[0]
    mu, lam = (0.0, 0.0) if offsets is None else (offsets["visible"], offsets["hidden"])
    both = jnp.concatenate([data, jax.lax.stop_gradient(negatives)]) - mu
    a = params["c"] + both @ params["W"]
    centred_h = jax.nn.sigmoid(a) - lam
    weights = jnp.concatenate([jnp.full((n, 1), 1.0 / n), jnp.full((m, 1), -1.0 / m)])
    f = -both @ params["b"] - jnp.sum(jax.nn.softplus(a) - lam * a, -1)
    grads = {"W": -both.T @ (weights * centred_h), "b": -jnp.sum(weights * both, 0),
             "c": -jnp.sum(weights * centred_h, 0)}
    loss = jnp.mean(f[:n]) - jnp.mean(f[n:])
    if offsets is None:
        return loss, grads, jnp.mean(f[:n])
    # F_plain(v) = F(v) - (b . mu + lam . c - mu^T W lam), the same for every v.
    shift = params["b"] @ mu + lam @ params["c"] - mu @ params["W"] @ lam
    return loss, grads, jnp.mean(f[:n]) - shift


def pseudo_likelihood(params: Params, v: jax.Array) -> jax.Array:
    """sum_i log p(v_i | v_-i) per row of binary ``v`` [N, D], every bit flipped in turn:
    log p(v_i | v_-i) = -softplus(F(v) - F(v with bit i flipped)). Flipping bit i moves
    the hidden pre-activations by (1 - 2 v_i) W_i, so all D flips cost one [D, H] pass."""

    def one(x):
        a = params["c"] + x @ params["W"]
        sign = 1.0 - 2.0 * x
        flipped = a[None, :] + sign[:, None] * params["W"]               # [D, H]
        # F(flip_i) - F(x) = -b_i (1 - 2 x_i) - sum_j [softplus(a'_ij) - softplus(a_j)]
        delta = (-params["b"] * sign
                 - jnp.sum(jax.nn.softplus(flipped) - jax.nn.softplus(a)[None], -1))
        return jnp.sum(-jax.nn.softplus(-delta))

    return jax.lax.map(one, v)


def sklearn_pseudo_likelihood(params: Params, v: jax.Array, bits: jax.Array) -> jax.Array:
    """scikit-learn's ``BernoulliRBM.score_samples``: D * log p(v_i | v_-i) for one bit
    i = ``bits[n]`` of each row n (scikit-learn draws them uniformly: a one-sample
    estimate of `pseudo_likelihood`'s sum; the factor D is what scikit-learn returns)."""
    d = v.shape[1]
    flip = jax.nn.one_hot(bits, d, dtype=v.dtype)
    v_flip = v + flip * (1.0 - 2.0 * v)
    delta = free_energy(params, v_flip) - free_energy(params, v)
    return d * -jax.nn.softplus(-delta)
