"""WGAN-GP (Gulrajani et al. 2017): lambda 10, n_critic 5, Adam 1e-4 (beta1 0, beta2 0.9),
textbook conv networks (the critic has no BatchNorm, as the penalty requires).

Command:
  python -m experiments.gan --config=experiments/configs/wgan_gp_mnist.py --workdir=runs/wgan_gp_mnist

Expected: see the README GAN table.
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
