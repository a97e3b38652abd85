"""GAN objectives as pure functions of discriminator/critic outputs.

Every discriminator loss takes ``(real, fake)`` (raw outputs on a real and a generated
batch: logits for the BCE family, real-valued scores otherwise) and every generator
loss takes ``fake``; each returns a scalar mean over the batch. ``get(name)`` returns the
pair for a config name.

| name    | discriminator / critic                              | generator                 |
|---------|-----------------------------------------------------|---------------------------|
| minimax | -log D(x) - log(1 - D(G(z)))                        | log(1 - D(G(z)))          |
| ns      | same as minimax                                     | -log D(G(z))              |
| lsgan   | 0.5 (D(x) - 1)^2 + 0.5 D(G(z))^2                    | (D(G(z)) - 1)^2           |
| wgan    | D(G(z)) - D(x)                                      | -D(G(z))                  |
| hinge   | max(0, 1 - D(x)) + max(0, 1 + D(G(z)))              | -D(G(z))                  |

BCE terms use log sigmoid(l) = -softplus(-l), exact for any logit magnitude.
"""

from __future__ import annotations

import functools
from typing import Callable

import jax
import jax.numpy as jnp

DiscLoss = Callable[[jax.Array, jax.Array], jax.Array]
GenLoss = Callable[[jax.Array], jax.Array]


def _bce_with_target(logits: jax.Array, target: float) -> jax.Array:
    """Mean binary cross-entropy of logits against a constant target in [0, 1]."""
    return jnp.mean(target * jax.nn.softplus(-logits) + (1.0 - target) * jax.nn.softplus(logits))


def bce_discriminator(real: jax.Array, fake: jax.Array, *, label_smoothing: float = 0.0) -> jax.Array:
    """-E[log D(x)] - E[log(1 - D(G(z)))]; one-sided smoothing sets the real target to 1 - s."""
    return _bce_with_target(real, 1.0 - label_smoothing) + _bce_with_target(fake, 0.0)


def minimax_generator(fake: jax.Array) -> jax.Array:
    """E[log(1 - D(G(z)))], the original (saturating) minimax generator loss."""
    return -jnp.mean(jax.nn.softplus(fake))


def ns_generator(fake: jax.Array) -> jax.Array:
    """-E[log D(G(z))], the non-saturating generator loss."""
    return _bce_with_target(fake, 1.0)


def lsgan_discriminator(real: jax.Array, fake: jax.Array) -> jax.Array:
    """0.5 * (E[(D(x) - 1)^2] + E[D(G(z))^2]) (Mao et al. 2017, a-b-c = 0-1-1)."""
    return 0.5 * (jnp.mean((real - 1.0) ** 2) + jnp.mean(fake**2))


def lsgan_generator(fake: jax.Array) -> jax.Array:
    """E[(D(G(z)) - 1)^2]."""
    return jnp.mean((fake - 1.0) ** 2)


def wasserstein_critic(real: jax.Array, fake: jax.Array) -> jax.Array:
    """E[D(G(z))] - E[D(x)]: minus the critic's estimate of the Wasserstein-1 distance."""
    return jnp.mean(fake) - jnp.mean(real)


def wasserstein_generator(fake: jax.Array) -> jax.Array:
    """-E[D(G(z))] (also the hinge generator loss)."""
    return -jnp.mean(fake)


def hinge_discriminator(real: jax.Array, fake: jax.Array) -> jax.Array:
    """E[max(0, 1 - D(x))] + E[max(0, 1 + D(G(z)))] (Lim & Ye 2017; Miyato et al. 2018)."""
    return jnp.mean(jax.nn.relu(1.0 - real)) + jnp.mean(jax.nn.relu(1.0 + fake))


_LOSSES: dict[str, tuple[DiscLoss, GenLoss]] = {
    "minimax": (bce_discriminator, minimax_generator),
    "ns": (bce_discriminator, ns_generator),
    "lsgan": (lsgan_discriminator, lsgan_generator),
    "wgan": (wasserstein_critic, wasserstein_generator),
    "hinge": (hinge_discriminator, wasserstein_generator),
}
NAMES = tuple(_LOSSES)


def get(name: str, *, label_smoothing: float = 0.0) -> tuple[DiscLoss, GenLoss]:
    """The (discriminator_loss, generator_loss) pair for ``name``.

    Args:
      name: one of ``minimax``, ``ns``, ``lsgan``, ``wgan``, ``hinge``.
      label_smoothing: one-sided label smoothing of the real targets (BCE losses only).

    Raises:
      ValueError: unknown name, or smoothing asked of a loss that has no labels.
    """
    if name not in _LOSSES:
        raise ValueError(f"Unknown GAN loss {name!r}; valid names: {', '.join(NAMES)}.")
    d_loss, g_loss = _LOSSES[name]
    if label_smoothing:
        if d_loss is not bce_discriminator:
            raise ValueError(f"label_smoothing applies to the BCE losses (minimax, ns), not {name!r}.")
        if not 0.0 < label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in (0, 1), got {label_smoothing}.")
        d_loss = functools.partial(bce_discriminator, label_smoothing=label_smoothing)
    return d_loss, g_loss
