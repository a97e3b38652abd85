"""Original WGAN (Arjovsky et al. 2017): weight clipping 0.01, RMSprop 5e-5, n_critic 5,
textbook conv networks.

Command:
  python -m experiments.gan --config=experiments/configs/wgan_mnist.py --workdir=runs/wgan_mnist

Expected: see the README GAN table.
"""

from experiments.configs import common, gan_mlp_mnist


def get_config(variant: str = ""):
    c = gan_mlp_mnist.get_config(variant)
    c.generator = "conv"
    c.discriminator = "conv"
    c.loss = "wgan"
    c.clip_value = 0.01
    c.n_critic = 5
    c.optimizer = "rmsprop"
    c.g_learning_rate = c.d_learning_rate = 5e-5
    return common.set_budget(c, variant, num_steps=1200, every=200)
