"""Convolutional VAE (two stride-2 4x4 convs, 20-d latent, Bernoulli decoder) on mnist5k.

Command:
  python -m experiments.vae --config=experiments/configs/conv_vae_mnist.py --workdir=runs/conv_vae

Expected (measured with --config.fast_layers=False, Flax's stock ConvTranspose):
test -ELBO 102.8 nats, IWAE(K=1000) NLL 95.7 nats after 3,000 steps of batch 128
(about 850 examples/s on 2 CPU cores).
"""

from experiments.configs import vae_mnist


def get_config(variant: str = ""):
    c = vae_mnist.get_config(variant)
    c.model = "conv"
    if not variant:
        c.num_steps = 3000
    return c
