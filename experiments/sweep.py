"""Search a config's hyperparameters from the repository: ``genjax-sweep`` under its
module name.

  python -m experiments.sweep --config=fast_gan_mnist --study=gan_lr --trials=40 \\
      --space='g_learning_rate=loguniform(1e-5, 1e-3); b1=uniform(0, 0.9)'
"""

from genjax.cli import sweep

if __name__ == "__main__":
    sweep.console()
