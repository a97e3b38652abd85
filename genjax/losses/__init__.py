"""Pure objectives as functions of arrays, one module per family.

  `genjax.losses.vae`: log-likelihoods, KL, ELBO, the IWAE bound, reparameterisation;
  `genjax.losses.gan`: discriminator and generator objectives (``get(name)``);
  `genjax.losses.penalties`: WGAN-GP gradient penalty, R1, weight clipping.
"""

from genjax.losses import gan, penalties, vae

__all__ = ["gan", "penalties", "vae"]
