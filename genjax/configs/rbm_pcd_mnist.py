"""A Bernoulli RBM with 500 hidden units trained by persistent contrastive divergence
(PCD-1, Tieleman 2008) on the embedded mnist5k digits, binarised afresh every epoch; the
test log-likelihood on the statically binarised test digits by AIS, with reverse AIS
beside it as the lower end of a bracket.

Command:
  genjax-train rbm --workdir=runs/rbm

Budget and result (seeds 0, 1, 2 with ``--config.seed``, 2-core Intel Xeon family 6
model 167): 0.8-0.9 training minutes each (compile included), 4.6-5.3 minutes with the
evaluations (three monitors and the final AIS, about 2.5 minutes). Test log-likelihood
by AIS -100.76 / -99.54 / -100.28 nats, median **-100.28** (band -100.71 to -99.01);
reverse AIS -104.68 / -104.64 / -105.28 (standard error 0.9), so the bracket is about
[-104.7, -99.0]. Train -96.61 (median); free-energy gap 3.8 nats; pseudo-likelihood
-82.13. Samples: domain FID 460 / 461 / 368, precision 0.93, recall 0.65, rarest class
1.4-3.4 %. For context, full MNIST (60,000 digits) in Salakhutdinov & Murray (2008):
CD-25 -86.3 nats, CD-1 about -125.

Variants: ``:test`` is a tiny configuration for tests and smoke runs (a few steps;
compiling takes most of its time).
"""

import ml_collections

from genjax.configs import common


def get_config(variant: str = "") -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.task = "rbm"
    c.hidden = (500,)            # hidden units per layer; more than one: a deep belief net
    c.cd_k = 1                   # Gibbs sweeps per update
    c.persistent = True          # PCD (chains kept across updates) or CD-k (from the data)
    c.num_chains = 100           # persistent chains (a multiple of the devices)
    c.centering_rate = 0.0       # > 0: a centered RBM whose offsets move at this rate
    c.learning_rate = 0.05
    c.lr_decay = "cosine"        # none | cosine: the learning rate to 0 over num_steps
    c.momentum = 0.5
    c.weight_decay = 1e-4        # L2 on the weights
    c.sample_steps = 1000        # Gibbs sweeps of each independent sampling chain
    c.ais_temperatures = 14500   # forward AIS betas (Salakhutdinov & Murray's 14,500); 0: no AIS
    c.ais_runs = 100             # forward AIS chains
    c.reverse_ais_temperatures = 2000  # reverse AIS betas (one chain per test digit)
    common.add_data_and_loop(c, preprocess="binarize_dynamic", batch_size=100,
                             num_steps=4000, every=1000)
    c.eval_preprocess = "binarize_static"
    c.eval_every = 1000          # free energies, their gap and the pseudo-likelihood; AIS at the end
    if variant == "test":
        c.hidden = (16,)
        c.num_chains = 16
        c.sample_steps = 5
        c.ais_temperatures = c.reverse_ais_temperatures = 30
        c.ais_runs = 8
        common.shrink_for_tests(c, steps=8)
        c.batch_size = 16
    elif variant:
        raise ValueError(f"Unknown config variant {variant!r}; valid: '' or 'test'.")
    return c
