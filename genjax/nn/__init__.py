"""Flax linen modules."""

from genjax.nn.autoencoders import (AutoEncoder, ConvDecoder, ConvEncoder, MLPDecoder,
                                    MLPEncoder, VAE)

__all__ = ["AutoEncoder", "ConvDecoder", "ConvEncoder", "MLPDecoder", "MLPEncoder", "VAE"]
