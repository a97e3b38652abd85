"""Pure loss functions: `genjax.losses.vae` (and, later, GAN objectives and penalties)."""
