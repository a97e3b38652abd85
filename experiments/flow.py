"""Train a normalizing flow from the repository: ``genjax-train flow`` under its old name.

  python -m experiments.flow --config=glow_mnist:test --workdir=/tmp/t
"""

from genjax.cli import train

if __name__ == "__main__":
    train.main("flow")
