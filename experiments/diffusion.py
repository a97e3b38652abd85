"""Train a diffusion model from the repository: ``genjax-train diffusion`` under its old name.

  python -m experiments.diffusion --config=ddpm_mnist:test --workdir=/tmp/t
"""

from genjax.cli import train

if __name__ == "__main__":
    train.main("diffusion")
