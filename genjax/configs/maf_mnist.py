"""MAF (Papamakarios et al. 2017) on the embedded mnist5k digits, dequantised as for
``realnvp_mnist``: the logit preprocessing, then autoregressive affine layers whose
shifts and scales come from one masked pass of a MADE over the 784 values, the order
reversed between layers, ActNorm before each.

Command:
  genjax-train flow --config=maf_mnist --workdir=runs/maf

Budget and result (2-core Intel Xeon, family 6 model 167, seeds 0, 1, 2): 1,000 steps in
2.8-3.6 minutes, 4-5.5 minutes with the final evaluation. Test bits/dim (dequantised,
one draw per digit) 3.450 / 3.541 / 3.843, median **3.541** (standard error about 0.3),
median digit 2.65, train 2.51: MAF overfits 4,000 digits within a minute (the test
figure is lowest near 500 steps), and a few test digits that ink pixels black in every
training digit carry the mean (docs/results.md, "MAF on mnist5k"). Samples at
temperature 0.7: domain FID median 1567, all 10 classes, the rarest at 3.9-5.8 %.

Sampling is sequential (784 steps per layer, `genjax.nn.maf.sequential_inverse`); the
density is one pass per layer.

Variants: ``:test`` is a tiny configuration for tests and smoke runs (a few steps;
compiling takes most of its time).
"""

import ml_collections

from genjax.configs import realnvp_mnist


def get_config(variant: str = "") -> ml_collections.ConfigDict:
    c = realnvp_mnist.get_config(variant)
    c.model = "maf"
    c.cpu_dots = "auto"      # dense layers only: YNNPACK's dots
    c.num_layers = 5         # MAF layers
    c.num_steps = 1000       # the test bits/dim is lowest after 500-1000 steps (overfitting)
    c.width = 512            # MADE hidden units per layer
    c.num_blocks = 2         # MADE hidden layers
    if variant:
        c.num_layers = 2
        c.width = 32
        c.num_blocks = 1
    return c
