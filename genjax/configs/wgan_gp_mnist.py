"""WGAN-GP (Gulrajani et al. 2017): lambda 10, n_critic 5, Adam 1e-4 (beta1 0, beta2 0.9),
textbook conv networks (the critic has no BatchNorm, as the penalty requires).

Command:
  genjax-train gan --config=wgan_gp_mnist --workdir=runs/wgan_gp_mnist

Measured (default budget, 600 generator steps of 5 x 64 real images, reached after 15.6
training minutes on a 2-core AMD EPYC with AVX2 in `python -m benchmarks.fast_gan
--candidates=wgan_gp --minutes=18`): domain FID 373.7, IS 7.16, KID 3,648, precision
0.502, recall 0.646; the rarest class holds 3 % of the samples. The penalty's five
critic updates per generator step make it the slowest textbook GAN per sample; for good
digits in 15 minutes use fast_gan_mnist.py. With --config.num_steps=2400 (about an
hour): FID 174.2, IS 8.01, KID 739, precision 0.511, recall 0.889, about half the
samples clearly readable; measured before the bias before each BatchNorm was removed
and the n_critic batches were interleaved (a rerun gives statistically similar, not
identical, numbers). Details in docs/results.md.
"""

from genjax.configs import common, wgan_mnist


def get_config(variant: str = ""):
    c = wgan_mnist.get_config(variant)  # Wasserstein loss, conv nets, n_critic 5
    c.clip_value = 0.0                  # the penalty replaces clipping
    c.gp_weight = 10.0
    c.optimizer = "adam"
    c.g_learning_rate = c.d_learning_rate = 1e-4
    c.b1, c.b2 = 0.0, 0.9
    return common.set_budget(c, variant, num_steps=600, every=200)
