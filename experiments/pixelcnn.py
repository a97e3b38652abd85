"""Train an autoregressive image model from the repository: ``genjax-train pixelcnn`` under its old name.

  python -m experiments.pixelcnn --config=pixelcnn_pp_mnist:test --workdir=/tmp/t
"""

from genjax.cli import train

if __name__ == "__main__":
    train.main("pixelcnn")
