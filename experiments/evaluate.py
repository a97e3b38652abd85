"""Evaluate a trained run from the repository: ``genjax-evaluate`` under its old name.

  python -m experiments.evaluate --workdir=runs/gan_mlp --num_samples=1000
"""

from genjax.cli import evaluate

if __name__ == "__main__":
    evaluate.console()
