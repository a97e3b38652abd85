"""WGAN-GP (Gulrajani et al. 2017): lambda 10, n_critic 5, Adam 1e-4 (beta1 0, beta2 0.9),
textbook conv networks (the critic has no BatchNorm, as the penalty requires).

Command:
  python -m experiments.gan --config=experiments/configs/wgan_gp_mnist.py --workdir=runs/wgan_gp_mnist

Measured (default budget, 2,400 generator steps of 5 x 64 real images; about 76 minutes
on 2 CPU cores): domain FID 174.2, IS 8.01, KID 739, precision 0.511, recall 0.889, the
best conv GAN here; about half the samples clearly readable. With
--config.num_steps=1200: FID 281.2, IS 7.72. Measured before the bias before each
BatchNorm was removed and the n_critic batches were interleaved; a rerun gives
statistically similar, not identical, numbers. Details in docs/results.md.
"""

from experiments.configs import common, wgan_mnist


def get_config(variant: str = ""):
    c = wgan_mnist.get_config(variant)  # Wasserstein loss, conv nets, n_critic 5
    c.clip_value = 0.0                  # the penalty replaces clipping
    c.gp_weight = 10.0
    c.optimizer = "adam"
    c.g_learning_rate = c.d_learning_rate = 1e-4
    c.b1, c.b2 = 0.0, 0.9
    return common.set_budget(c, variant, num_steps=2400, every=400)
