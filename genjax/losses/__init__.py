"""Pure objectives as functions of arrays, one module per family.

  `genjax.losses.vae`: log-likelihoods, KL, ELBO, the IWAE bound, reparameterisation;
  `genjax.losses.gan`: discriminator and generator objectives (``get(name)``);
  `genjax.losses.penalties`: WGAN-GP gradient penalty, R1, weight clipping;
  `genjax.losses.diffusion`: schedules, the forward process, targets, the bound's terms;
  `genjax.losses.pixelcnn`: Bernoulli and discretised-logistic-mixture pixel likelihoods;
  `genjax.losses.discretized`: 8-bit bins under a continuous distribution (both above).
"""

from genjax.losses import diffusion, discretized, gan, penalties, pixelcnn, vae

__all__ = ["diffusion", "discretized", "gan", "penalties", "pixelcnn", "vae"]
