"""Hinge loss with spectral normalisation of every discriminator kernel (Miyato et al. 2018),
textbook conv networks (CPU-sized; sngan_cifar10 uses the SNGAN standard CNN), Adam 2e-4
(beta1 0.5, beta2 0.999).

Command:
  python -m experiments.gan --config=experiments/configs/sngan_mnist.py --workdir=runs/sngan_mnist

Expected: see the README GAN table.
"""

from experiments.configs import common, gan_mlp_mnist


def get_config(variant: str = ""):
    c = gan_mlp_mnist.get_config(variant)
    c.generator = "conv"
    c.discriminator = "conv"
    c.loss = "hinge"
    c.spectral_norm = True
    return common.set_budget(c, variant, num_steps=2400, every=400)
