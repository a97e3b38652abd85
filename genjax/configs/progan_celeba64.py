"""Progressive growing on CelebA at 64x64 (4 -> 8 -> 16 -> 32 -> 64), for users with the
data (tfds `celeb_a`, downloaded once; the usual 140x140 centre crop resized to 64).

Command:
  genjax-train gan --config=progan_celeba64 --workdir=runs/progan_celeba64

Result: not yet run: needs the celeb_a dataset from tfds. The tests check that it builds
its five growth stages. Without internet, try it on mnist5k:
``--config.dataset=mnist5k --config.crop=64``.
"""

from genjax.configs import common, progan_mnist


def get_config(variant: str = ""):
    c = progan_mnist.get_config(variant)
    c.dataset = "celeb_a"
    c.crop = None          # the dataset default geometry: 140 crop, 64x64
    c.image_size = 64
    if variant:
        c.dataset, c.crop, c.image_size = "mnist5k", 64, None  # offline test: MNIST padded to 64
    else:
        c.batch_size = 64
        c.base_width = 64  # channels 256, 256, 256, 128, 64
        c.fade_steps = c.stable_steps = 10000
    return common.set_budget(c, variant, num_steps=90000, every=5000)
