"""Original WGAN (Arjovsky et al. 2017): weight clipping 0.01, RMSprop 5e-5, n_critic 5,
textbook conv networks.

Command:
  genjax-train gan --config=wgan_mnist --workdir=runs/wgan_mnist

Measured (default budget, 800 generator steps of 5 x 64 real images, reached after 14.9
training minutes on a 2-core AMD EPYC with AVX2 in `python -m benchmarks.fast_gan
--candidates=wgan --minutes=16`): domain FID 528.5, IS 6.77, KID 4,239, precision
0.405, recall 0.632; the rarest class holds 3.4 % of the samples. Weight clipping
learns far slower than the penalty (as its paper reports); for good digits in 15
minutes use fast_gan_mnist.py. With --config.num_steps=1200 (an earlier run, before
the bias before each BatchNorm was removed and the n_critic batches were interleaved):
FID 521.4, IS 6.53, KID 3,606; blotchy strokes, few recognisable digits. Details in
docs/results.md.
"""

from genjax.configs import common, gan_mlp_mnist


def get_config(variant: str = ""):
    c = gan_mlp_mnist.get_config(variant)
    c.generator = "conv"
    c.discriminator = "conv"
    c.loss = "wgan"
    c.clip_value = 0.01
    c.n_critic = 5
    c.optimizer = "rmsprop"
    c.g_learning_rate = c.d_learning_rate = 5e-5
    return common.set_budget(c, variant, num_steps=800, every=200)
