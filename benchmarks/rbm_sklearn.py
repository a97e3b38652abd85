"""The same RBM trained by genjax and by scikit-learn's ``BernoulliRBM``, side by side.

Both train a Bernoulli RBM with ``--hidden`` units on the statically binarised mnist5k
training digits with PCD-1 (scikit-learn's algorithm: persistent chains as many as the
batch, one Gibbs sweep per update, plain SGD, no momentum or weight decay, weights from
N(0, 0.01^2), biases zero), the same learning rate, batch size and epochs, the batches
in the same fixed order every epoch. Reported per batch size:

* seconds per epoch, compile excluded: scikit-learn's ``fit`` over ``--epochs`` epochs
  divided by them; genjax's compiled epoch (``lax.scan`` over its batches) timed
  after a first, compiling epoch, best of the timed epochs;
* at equal epochs, both weight sets scored by genjax: the exact pseudo-log-likelihood
  (every bit flipped; nats per test digit), scikit-learn's own ``score_samples`` (one
  random bit, times D), and the test log-likelihood by AIS with the reverse-AIS lower
  estimate beside it.

  python -m benchmarks.rbm_sklearn [--batch_sizes=10,100] [--epochs=10] [--out=...]

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


def train_sklearn(x, batch: int, epochs: int):
    """scikit-learn's RBM after ``epochs`` epochs, and its seconds per epoch."""
    from sklearn.neural_network import BernoulliRBM

    rbm = BernoulliRBM(n_components=_HIDDEN.value, learning_rate=_LR.value, batch_size=batch,
                       n_iter=epochs, random_state=0)
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

    from experiments.configs import rbm_pcd_mnist
    from genjax.steps.common import multi_step
    from genjax.tasks import TASKS

    c = rbm_pcd_mnist.get_config()
    overrides = dict(hidden=[_HIDDEN.value], batch_size=batch, num_chains=batch, cd_k=1,
                     persistent=True, centering_rate=0.0, learning_rate=_LR.value,
                     lr_decay="none", momentum=0.0, weight_decay=0.0, num_steps=steps)
    c = ml_collections.ConfigDict({**c.to_dict(), **overrides})
    task = TASKS["rbm"](c, (28, 28, 1))
    return task, jax.jit(lambda s, b: multi_step(task.train_step)(s, b)[0], donate_argnums=0)


def train_genjax(x, batch: int, epochs: int):
    """genjax's RBM after ``epochs`` epochs (one compiling epoch first, counted among
    them) and its best seconds per epoch."""
    import jax
    import numpy as np

    steps = len(x) // batch
    task, epoch = genjax_epoch(batch, steps * epochs)
    stacked = {"image": np.asarray(x[:steps * batch]).reshape(steps, batch, 28, 28, 1)}
    stacked = jax.device_put(stacked)
    state = jax.block_until_ready(epoch(task.init(jax.random.key(0)), stacked))
    times = []
    for _ in range(epochs - 1):
        start = time.perf_counter()
        state = jax.block_until_ready(epoch(state, stacked))
        times.append(time.perf_counter() - start)
    from genjax.steps.rbm import plain_layers

    return plain_layers(state)[0], min(times)


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


def main(argv):
    del argv
    import copy

    train, test = digits("train"), digits("test")
    rows = []
    for batch in map(int, _BATCHES.value):
        rbm, sk_params, sk_seconds = train_sklearn(train, batch, _EPOCHS.value)
        gj_params, gj_seconds = train_genjax(train, batch, _EPOCHS.value)
        row = {"batch_size": batch, "epochs": _EPOCHS.value, "hidden": _HIDDEN.value,
               "learning_rate": _LR.value, "sklearn_seconds_per_epoch": round(sk_seconds, 4),
               "genjax_seconds_per_epoch": round(gj_seconds, 4),
               "speedup": round(sk_seconds / gj_seconds, 2),
               "sklearn": scores(sk_params, copy.deepcopy(rbm), test, train),
               "genjax": scores(gj_params, copy.deepcopy(rbm), test, train)}
        rows.append(row)
        print(json.dumps(row), flush=True)
    result = {"machine": machine.describe(), "command": "python -m benchmarks.rbm_sklearn "
              + " ".join(sys.argv[1:]), "ais_temperatures": _TEMPS.value,
              "reverse_ais_temperatures": _REVERSE.value, "rows": rows}
    os.makedirs(os.path.dirname(_OUT.value), exist_ok=True)
    with open(_OUT.value, "w") as out:
        json.dump(result, out, indent=1)


if __name__ == "__main__":
    app.run(main)
