"""Original WGAN (Arjovsky et al. 2017): weight clipping 0.01, RMSprop 5e-5, n_critic 5,
textbook conv networks.

Command:
  python -m experiments.gan --config=experiments/configs/wgan_mnist.py --workdir=runs/wgan_mnist

Measured (default budget, 1,200 generator steps of 5 x 64 real images; about 48 minutes
on 2 CPU cores): domain FID 521.4, IS 6.53, KID 3,606, precision 0.400, recall 0.517;
blotchy strokes, few recognisable digits (weight clipping learns far slower than the
penalty). Measured before the bias before each BatchNorm was removed and the n_critic
batches were interleaved; a rerun gives statistically similar, not identical, numbers.
Details in docs/results.md.
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
