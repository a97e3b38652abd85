"""Pure objectives as functions of arrays, one module per family.

  `genjax.losses.vae`: log-likelihoods, KL, ELBO, the IWAE bound, reparameterisation;
  `genjax.losses.gan`: discriminator and generator objectives (``get(name)``);
  `genjax.losses.penalties`: WGAN-GP gradient penalty, R1, weight clipping;
  `genjax.losses.diffusion`: schedules, the forward process, targets, the bound's terms.
"""

from genjax.losses import diffusion, gan, penalties, vae

__all__ = ["diffusion", "gan", "penalties", "vae"]
