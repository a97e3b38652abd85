"""Textbook conv DCGAN (conv generator with BatchNorm, conv critic), non-saturating BCE, Adam
2e-4 (beta1 0.5).

Command:
  python -m experiments.gan --config=experiments/configs/dcgan_mnist.py --workdir=runs/dcgan_mnist

Expected: see the README GAN table.
"""

from experiments.configs import common, gan_mlp_mnist


def get_config(variant: str = ""):
    c = gan_mlp_mnist.get_config(variant)
    c.generator = "conv"
    c.discriminator = "conv"
    return common.set_budget(c, variant, num_steps=2400, every=400)
