"""Deterministic MLP autoencoder (784-128-64-128-784) on mnist5k, Bernoulli reconstruction loss.

Command:
  genjax-train vae --config=ae_mnist --workdir=runs/ae_mnist

Expected (measured): test reconstruction cross-entropy 62.3 nats per image (grey-valued
targets, so not a likelihood) after 6,000 steps of batch 128.
Use ``--config.model=conv`` for the convolutional autoencoder.
"""

from genjax.configs import vae_mnist


def get_config(variant: str = ""):
    c = vae_mnist.get_config(variant)
    c.deterministic = True
    c.preprocess = "unit"
    c.eval_preprocess = "unit"
    if not variant:
        c.hidden = (128,)
        c.latent_dim = 64
    return c
