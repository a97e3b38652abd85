"""Flax linen modules."""

from genjax.nn.autoencoders import (AutoEncoder, ConvDecoder, ConvEncoder, MLPDecoder,
                                    MLPEncoder, VAE)
from genjax.nn.gan import (ConvDiscriminator, ConvGenerator, DCGANDiscriminator, DCGANGenerator,
                           MLPDiscriminator, MLPGenerator, SNGANDiscriminator, SNGANGenerator)

__all__ = ["AutoEncoder", "ConvDecoder", "ConvEncoder", "MLPDecoder", "MLPEncoder", "VAE",
           "ConvDiscriminator", "ConvGenerator", "DCGANDiscriminator", "DCGANGenerator",
           "MLPDiscriminator", "MLPGenerator", "SNGANDiscriminator", "SNGANGenerator"]
