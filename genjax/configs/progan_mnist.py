"""Progressive growing (Karras et al. 2018) on mnist5k padded to 32x32: 4 -> 8 -> 16 -> 32,
each new resolution faded in over ``fade_steps`` then trained for ``stable_steps``;
WGAN-GP (lambda 10, n_critic 1 as in the paper's setup), minibatch standard deviation
in the discriminator, pixel norm in the generator, Adam 1e-3 (beta1 0, beta2 0.99).

Command:
  genjax-train gan --config=progan_mnist --workdir=runs/progan_mnist

The growth stage and fade-in coefficient are part of the train state (``extra/growth``),
so a run resumes mid-fade. Domain metrics crop the samples back to 28x28.

Result: not yet run at its full 2,400-step budget (about 45 minutes on 2 CPU cores). The
tests cover it instead: fade-in equalities and a resumed end-to-end run.
"""

from genjax.configs import common, gan_mlp_mnist


def get_config(variant: str = ""):
    c = gan_mlp_mnist.get_config(variant)
    c.generator = c.discriminator = "progan"
    c.crop = 32            # pad the 28x28 digits to 32x32
    c.base_width = 16      # channels 64, 64, 32, 16 at 4, 8, 16, 32 (sized for a CPU)
    c.loss = "wgan"
    c.gp_weight = 10.0
    c.minibatch = "stddev"
    c.g_learning_rate = c.d_learning_rate = 1e-3
    c.b1, c.b2 = 0.0, 0.99
    c.latent_dim = 128
    if variant:
        # 4 steps: 4x4, fading into 8x8 (alpha 0, 0.5: the test resumes here), 8x8, 16x16
        c.fade_steps, c.stable_steps = 2, 1
        c.base_width = 4
    else:
        c.fade_steps = c.stable_steps = 300
    return common.set_budget(c, variant, num_steps=2400, every=400)
