"""The same RBM trained by genjax and by scikit-learn's ``BernoulliRBM``, side by side.

Both train a Bernoulli RBM with ``--hidden`` units on the statically binarised mnist5k
training digits with PCD-1 (scikit-learn's algorithm: persistent chains as many as the
batch, one Gibbs sweep per update, plain SGD, no momentum or weight decay, weights from
N(0, 0.01^2), biases zero), the same learning rate, batch size and epochs, the batches
in the same fixed order every epoch. Reported per batch size:

* seconds per epoch, compile excluded: scikit-learn's ``fit`` over ``--epochs`` epochs
  divided by them; genjax's compiled epoch (``lax.scan`` over its batches) timed
  after a first, compiling epoch, best of the timed epochs;
* a floor for any XLA implementation of the same update: an epoch of only the four
  products with W that genjax's PCD-1 update makes and the weight update (binarised by
  a comparison instead of sampled; no biases, no optimizer, no random numbers), timed
  like genjax's epoch;
* at equal epochs, both weight sets scored by genjax: the exact pseudo-log-likelihood
  (every bit flipped; nats per test digit), scikit-learn's own ``score_samples`` (one
  random bit, times D), and the test log-likelihood by AIS with the reverse-AIS lower
  estimate beside it.

Each side trains ``--seeds`` times (seeds 0, 1, ...: the initial weights and, for
scikit-learn, its sampling); the rows report medians over the seeds, the JSON each seed.

  python -m benchmarks.rbm_sklearn [--batch_sizes=10,100] [--epochs=10] [--seeds=3] [--out=...]

Needs scikit-learn (``pip install -e '.[bench]'``).
"""

from __future__ import annotations

import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags  # noqa: E402

from benchmarks import machine  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_BATCHES = flags.DEFINE_list("batch_sizes", ["10", "100"], "Batch sizes (scikit-learn's default: 10).")
_EPOCHS = flags.DEFINE_integer("epochs", 10, "Training epochs of each side.")
_SEEDS = flags.DEFINE_integer("seeds", 3, "Seeds of each side (rows report medians).")
_HIDDEN = flags.DEFINE_integer("hidden", 500, "Hidden units.")
_LR = flags.DEFINE_float("learning_rate", 0.05, "Both sides' SGD learning rate.")
_TEMPS = flags.DEFINE_integer("ais_temperatures", 14500, "Forward AIS temperatures.")
_REVERSE = flags.DEFINE_integer("reverse_ais_temperatures", 2000, "Reverse AIS temperatures.")
_OUT = flags.DEFINE_string("out", os.path.join(ROOT, "benchmarks", "results", "rbm_sklearn.json"),
                           "Where to write the JSON results.")


def digits(split: str):
    """The statically binarised mnist5k ``split`` as float32 [N, 784]."""
    from genjax import data as gdata
    from genjax.tasks.rbm import flat_images

    spec = gdata.DataSpec(name="mnist5k", preprocess="binarize_static")
    return flat_images(gdata.eval_iterator(spec, split, global_batch_size=500))


def train_sklearn(x, batch: int, epochs: int, seed: int):
    """scikit-learn's RBM after ``epochs`` epochs, and its seconds per epoch."""
    from sklearn.neural_network import BernoulliRBM

    rbm = BernoulliRBM(n_components=_HIDDEN.value, learning_rate=_LR.value, batch_size=batch,
                       n_iter=epochs, random_state=seed)
    start = time.perf_counter()
    rbm.fit(x)
    seconds = (time.perf_counter() - start) / epochs
    params = {"W": rbm.components_.T.astype("float32"), "b": rbm.intercept_visible_.astype("float32"),
              "c": rbm.intercept_hidden_.astype("float32")}
    return rbm, params, seconds


def genjax_epoch(batch: int, steps: int):
    """(task, the compiled epoch ``(state, stacked batches) -> state``)."""
    import jax
    import ml_collections

    from genjax.configs import rbm_pcd_mnist
    from genjax.steps.common import multi_step
    from genjax.tasks import TASKS

    c = rbm_pcd_mnist.get_config()
    overrides = dict(hidden=[_HIDDEN.value], batch_size=batch, num_chains=batch, cd_k=1,
                     persistent=True, centering_rate=0.0, learning_rate=_LR.value,
                     lr_decay="none", momentum=0.0, weight_decay=0.0, num_steps=steps)
    c = ml_collections.ConfigDict({**c.to_dict(), **overrides})
    task = TASKS["rbm"](c, (28, 28, 1))
    return task, jax.jit(lambda s, b: multi_step(task.train_step)(s, b)[0], donate_argnums=0)


def best_epoch(epoch, state, stacked, epochs: int):
    """(state after ``epochs`` calls of ``epoch``, the best seconds of calls 2 onwards:
    the first compiles)."""
    import jax

    state = jax.block_until_ready(epoch(state, stacked))
    times = []
    for _ in range(epochs - 1):
        start = time.perf_counter()
        state = jax.block_until_ready(epoch(state, stacked))
        times.append(time.perf_counter() - start)
    return state, min(times)


def stack(x, batch: int):
    """The epoch's batches of ``x`` in order, stacked: [steps, batch, 784]."""
    import numpy as np

    steps = len(x) // batch
    return np.asarray(x[:steps * batch]).reshape(steps, batch, -1)


def train_genjax(x, batch: int, epochs: int, seed: int):
    """genjax's RBM after ``epochs`` epochs (one compiling epoch first, counted among
    them) and its best seconds per epoch."""
    import jax

    from genjax.steps.rbm import plain_layers

    stacked = stack(x, batch)
    task, epoch = genjax_epoch(batch, len(stacked) * epochs)
    images = jax.device_put({"image": stacked.reshape(*stacked.shape[:2], 28, 28, 1)})
    state, seconds = best_epoch(epoch, task.init(jax.random.key(seed)), images, epochs)
    return plain_layers(state)[0], seconds


def products_floor(x, batch: int, epochs: int, seed: int) -> float:
    """Best seconds per epoch of the update's matrix products alone (module docstring):
    v -> h and h -> v of the chains, the pre-activations of data and negatives together,
    and the weight gradient, as in `genjax.losses.rbm.cd_gradient`."""
    import jax
    import jax.numpy as jnp

    def update(carry, v0):
        w, v = carry
        h = (v @ w > 0).astype(w.dtype)
        v = (h @ w.T > 0).astype(w.dtype)
        both = jnp.concatenate([v0, v])
        a = both @ w
        sign = jnp.concatenate([jnp.full((batch, 1), 1.0 / batch), jnp.full((batch, 1), -1.0 / batch)])
        return (w + _LR.value * both.T @ (sign * a), v), None

    epoch = jax.jit(lambda carry, xs: jax.lax.scan(update, carry, xs)[0], donate_argnums=0)
    stacked = jax.device_put(stack(x, batch))
    w = 0.01 * jax.random.normal(jax.random.key(seed), (stacked.shape[-1], _HIDDEN.value))
    return best_epoch(epoch, (w, stacked[0]), stacked, epochs)[1]


def scores(params, rbm, test, train) -> dict:
    """Exact pseudo-likelihood, scikit-learn's, and AIS / reverse AIS of one weight set."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from genjax.losses import rbm as L
    from genjax.tasks.rbm import likelihoods

    params = jax.tree.map(jnp.asarray, params)
    rbm.components_ = np.asarray(params["W"]).T.astype(np.float64)
    rbm.intercept_visible_ = np.asarray(params["b"], np.float64)
    rbm.intercept_hidden_ = np.asarray(params["c"], np.float64)
    out = {"pseudo_likelihood": float(jnp.mean(L.pseudo_likelihood(params, jnp.asarray(test)))),
           "sklearn_score_samples": float(np.mean(rbm.score_samples(test.astype(np.float64))))}
    found = likelihoods(params, jnp.asarray(test), jnp.asarray(train), _TEMPS.value, 100,
                        _REVERSE.value, jax.random.key(0))
    out.update({k: round(v, 3) for k, v in found.items() if "ais" in k})
    return out


def one_seed(train, test, batch: int, seed: int) -> dict:
    """Both sides trained and scored, and the floor timed, with one seed."""
    import copy

    rbm, sk_params, sk_seconds = train_sklearn(train, batch, _EPOCHS.value, seed)
    gj_params, gj_seconds = train_genjax(train, batch, _EPOCHS.value, seed)
    floor = products_floor(train, batch, _EPOCHS.value, seed)
    return {"seed": seed, "sklearn_seconds_per_epoch": round(sk_seconds, 4),
            "genjax_seconds_per_epoch": round(gj_seconds, 4),
            "products_alone_seconds_per_epoch": round(floor, 4),
            "speedup": round(sk_seconds / gj_seconds, 2),
            "speedup_bound": round(sk_seconds / floor, 2),
            "sklearn": scores(sk_params, copy.deepcopy(rbm), test, train),
            "genjax": scores(gj_params, copy.deepcopy(rbm), test, train)}


def medians(runs: list[dict]) -> dict:
    """The median over seeds of every number in ``runs`` (nested dicts alike)."""
    import numpy as np

    out = {}
    for key, value in runs[0].items():
        if isinstance(value, dict):
            out[key] = medians([r[key] for r in runs])
        elif key != "seed":
            out[key] = round(float(np.median([r[key] for r in runs if key in r])), 4)
    return out


def main(argv):
    del argv
    train, test = digits("train"), digits("test")
    rows = []
    for batch in map(int, _BATCHES.value):
        runs = []
        for seed in range(_SEEDS.value):
            runs.append(one_seed(train, test, batch, seed))
            print(json.dumps({"batch_size": batch, **runs[-1]}), flush=True)
        row = {"batch_size": batch, "epochs": _EPOCHS.value, "hidden": _HIDDEN.value,
               "learning_rate": _LR.value, "seeds": _SEEDS.value, **medians(runs), "runs": runs}
        rows.append(row)
    result = {"machine": machine.describe(), "command": "python -m benchmarks.rbm_sklearn "
              + " ".join(sys.argv[1:]), "ais_temperatures": _TEMPS.value,
              "reverse_ais_temperatures": _REVERSE.value, "rows": rows}
    os.makedirs(os.path.dirname(_OUT.value), exist_ok=True)
    with open(_OUT.value, "w") as out:
        json.dump(result, out, indent=1)


if __name__ == "__main__":
    app.run(main)
