"""Textbook MLP VAE (784-400-20, Bernoulli decoder) on the embedded mnist5k digits.

Command:
  genjax-train vae --config=vae_mnist --workdir=runs/vae_mnist

Expected (measured): test -ELBO 105.9 nats and IWAE(K=1000) NLL 99.2 nats on the
1,000 mnist5k test digits (statically binarised), after 6,000 steps of batch 128
(101 s end to end on a 2-core AMD EPYC).

Variants: ``:test`` is a tiny configuration for tests and smoke runs (a few steps;
compiling takes most of its time).
"""

import ml_collections

from genjax.configs import common


def get_config(variant: str = "") -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.task = "vae"
    c.model = "mlp"           # mlp | conv
    c.deterministic = False   # True: plain autoencoder (no KL, no sampling)
    c.latent_dim = 20
    c.hidden = (400,)
    c.conv_features = (32, 64)
    c.likelihood = "bernoulli"  # bernoulli | gaussian
    c.beta = 1.0
    c.learning_rate = 1e-3
    c.iwae_samples = 1000
    # Train on a fresh binary sample of each digit every epoch; test on one fixed sample.
    common.add_data_and_loop(c, preprocess="binarize_dynamic", batch_size=128, num_steps=6000,
                             every=2000)
    c.eval_preprocess = "binarize_static"
    if variant == "test":
        c.hidden = (64,)
        c.latent_dim = 8
        c.conv_features = (8, 16)
        c.iwae_samples = 10
        common.shrink_for_tests(c, steps=20)
    elif variant:
        raise ValueError(f"Unknown config variant {variant!r}; valid: '' or 'test'.")
    return c
