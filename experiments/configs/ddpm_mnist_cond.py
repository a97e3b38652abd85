"""Class-conditional DDPM with classifier-free guidance (Ho & Salimans 2022) on the
embedded mnist5k digits: the ``ddpm_mnist`` U-Net with a class embedding, trained with
10 % of labels dropped to the "no label" token, sampled with guidance scale w = 1.

Command:
  python -m experiments.diffusion --config=experiments/configs/ddpm_mnist_cond.py --workdir=runs/ddpm_cond
  python -m experiments.evaluate --workdir=runs/ddpm_cond --guidance=3   # another w

Not yet measured: the budget and results are filled in from a measured run.

Variants: ``:test`` is a tiny, seconds-long configuration for tests and smoke runs.
"""

import ml_collections

from experiments.configs import ddpm_mnist


def get_config(variant: str = "") -> ml_collections.ConfigDict:
    c = ddpm_mnist.get_config(variant)
    c.num_classes = 10
    c.label_dropout = 0.1
    c.guidance = 1.0
    return c
