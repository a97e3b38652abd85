"""Flax linen modules."""

from genjax.nn.autoencoders import (AutoEncoder, ConvDecoder, ConvEncoder, MLPDecoder,
                                    MLPEncoder, VAE, conv_decoder_takes)
from genjax.nn.diffusion import UNet
from genjax.nn.gan import (Conditional, ConvDiscriminator, ConvGenerator, DCGANDiscriminator,
                           DCGANGenerator, Head, MLPDiscriminator, MLPGenerator,
                           SNGANDiscriminator, SNGANGenerator, conv_generator_takes,
                           dcgan_generator_takes)
from genjax.nn.minibatch import MinibatchDiscrimination, minibatch_stddev
from genjax.nn.pixelcnn import GatedPixelCNN, MaskedConv, PixelCNN, PixelCNNPP
from genjax.nn.progressive import (ProDiscriminator, ProGenerator, growth_schedule,
                                   progressive_takes)

__all__ = ["AutoEncoder", "ConvDecoder", "ConvEncoder", "MLPDecoder", "MLPEncoder", "VAE",
           "ConvDiscriminator", "ConvGenerator", "DCGANDiscriminator", "DCGANGenerator",
           "MLPDiscriminator", "MLPGenerator", "SNGANDiscriminator", "SNGANGenerator",
           "Conditional", "Head", "MinibatchDiscrimination", "minibatch_stddev",
           "ProDiscriminator", "ProGenerator", "growth_schedule", "UNet",
           "GatedPixelCNN", "MaskedConv", "PixelCNN", "PixelCNNPP",
           "conv_decoder_takes", "conv_generator_takes", "dcgan_generator_takes",
           "progressive_takes"]
