"""DCGAN (Radford et al. 2016) for 32x32 colour images on CIFAR-10
(--config.dataset=mnist5k runs the same networks offline at 28x28).

Command:
  genjax-train gan --config=dcgan_cifar10 --workdir=runs/dcgan_cifar10

Result: not yet run: needs the cifar10 dataset from tfds (downloaded on first use).
The tests train it for a few steps offline on mnist5k.
"""

from genjax.configs import common, gan_mlp_mnist


def get_config(variant: str = ""):
    c = gan_mlp_mnist.get_config(variant)
    c.generator = "dcgan"
    c.discriminator = "dcgan"
    return common.use_cifar10(c, variant)
