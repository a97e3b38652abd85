"""Train an RBM or a deep belief net from the repository: ``genjax-train rbm`` under its old name.

  python -m experiments.rbm --config=dbn_mnist:test --workdir=/tmp/t
"""

from genjax.cli import train

if __name__ == "__main__":
    train.main("rbm")
