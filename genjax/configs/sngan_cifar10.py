"""SNGAN standard CNN (Miyato et al. 2018, Table 3) with hinge loss and spectral norm on
CIFAR-10, Adam 2e-4 (beta1 0.5, beta2 0.999), n_critic 1 (--config.dataset=mnist5k
runs the same networks offline at 28x28).

Command:
  genjax-train gan --config=sngan_cifar10 --workdir=runs/sngan_cifar10

Result: not yet run: needs the cifar10 dataset from tfds (downloaded on first use).
The tests train it for a few steps offline on mnist5k.
"""

from genjax.configs import common, gan_mlp_mnist


def get_config(variant: str = ""):
    c = gan_mlp_mnist.get_config(variant)
    c.generator = "sngan"
    c.discriminator = "sngan"
    c.latent_dim = 128
    c.loss = "hinge"
    c.spectral_norm = True
    return common.use_cifar10(c, variant)
