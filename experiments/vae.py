"""Train an autoencoder or VAE from the repository: ``genjax-train vae`` under its old name.

  python -m experiments.vae --config=vae_mnist:test --workdir=/tmp/t
"""

from genjax.cli import train

if __name__ == "__main__":
    train.main("vae")
