"""Train the domain classifier from the repository: ``genjax-train classifier`` under its old name.

  python -m experiments.classifier --config=classifier_mnist5k:test --workdir=/tmp/t
"""

from genjax.cli import train

if __name__ == "__main__":
    train.main("classifier")
