"""Convolutional VAE (two stride-2 4x4 convs, 20-d latent, Bernoulli decoder) on mnist5k.

Command:
  genjax-train vae --config=conv_vae_mnist --workdir=runs/conv_vae

Measured (fed by tf.data: --config.data_source=tfds): test -ELBO 102.77 nats, IWAE(K=1000) NLL 95.66 nats after 3,000 steps of
batch 128, at about 1,700 examples/s on 2 CPU cores with the exact fast layers. With
--config.fast_layers=False (Flax's stock ConvTranspose): 102.79 / 95.69 at about 850
examples/s. Details in docs/results.md.
"""

from genjax.configs import vae_mnist


def get_config(variant: str = ""):
    c = vae_mnist.get_config(variant)
    c.model = "conv"
    if not variant:
        c.num_steps = 3000
    return c
