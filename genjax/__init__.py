"""genjax: generative image models as pure functions on JAX/Flax."""

__version__ = "0.1.0"
