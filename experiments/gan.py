"""Train a GAN from the repository: ``genjax-train gan`` under its old name.

  python -m experiments.gan --config=dcgan_mnist:test --workdir=/tmp/t
"""

from genjax.cli import train

if __name__ == "__main__":
    train.main("gan")
