"""``genjax-train <family>``: train any family from anywhere (installed by ``pip install``).

  genjax-train vae --config=vae_mnist --workdir=runs/vae
  genjax-train gan --config=dcgan_mnist --config.batch_size=128 --workdir=runs/dcgan
  genjax-train diffusion --config=ddpm_mnist:test --workdir=/tmp/t
  genjax-train gan --config=path/to/my_gan.py --workdir=runs/mine
  genjax-train flow --config=glow_mnist --print_config

``--config`` names a shipped config (`genjax.configs`; ``:test`` for the tiny variant) or
a config file's path; without it the family's default config runs. Any config field can
be overridden with ``--config.<field>=value``; ``--print_config`` lists every field with
its type and value. Re-running the same command resumes from the last checkpoint in
``--workdir``. In the repository, ``python -m experiments.<family>`` is the same launcher.
"""

from __future__ import annotations

import sys

from genjax.cli import launch

# family -> (its default config, what it trains); a config's ``task`` names its family
FAMILIES = {
    "vae": ("vae_mnist", "autoencoders and VAEs"),
    "gan": ("gan_mlp_mnist", "GANs (BCE, LSGAN, WGAN(-GP), hinge/SNGAN, progressive, ...)"),
    "diffusion": ("ddpm_mnist", "diffusion models (DDPM/DDIM/DPM++ sampling, guidance)"),
    "pixelcnn": ("gated_pixelcnn_mnist",
                 "autoregressive models (PixelCNN, Gated, PixelCNN++, PixelRNN, Transformer)"),
    "flow": ("realnvp_mnist", "normalizing flows (RealNVP, Glow, MAF, 2-D flows)"),
    "rbm": ("rbm_pcd_mnist", "RBMs and deep belief nets"),
    "classifier": ("classifier_mnist5k", "the domain classifier behind the offline FID/IS"),
}


def usage() -> str:
    """The one-line answer to a missing or unknown family."""
    return ("usage: genjax-train <family> --config=<name or path> --workdir=DIR; families: "
            + "; ".join(f"{f} ({what})" for f, (_, what) in FAMILIES.items()))


def main(family: str | None = None, argv: list[str] | None = None) -> None:
    """Train ``family`` (default: the first argument of ``argv``, itself default
    ``sys.argv``) with the launcher's flags; every mistake ends in one line."""
    argv = list(sys.argv if argv is None else argv)
    launch.help_text(__doc__)
    if family is None:
        if len(argv) < 2 or argv[1].startswith("-"):
            launch.fail(f"UsageError: no family given. {usage()}")
        family = argv.pop(1)
    if family not in FAMILIES:
        launch.fail(f"UsageError: unknown family {family!r}. {usage()}")
    if family == "classifier":
        from genjax.cli import classifier

        launch.run(classifier.main, argv)
        return
    config, workdir = launch.define_run_flags(FAMILIES[family][0])
    launch.run(launch.main_for(config, workdir, family=family), argv)


if __name__ == "__main__":
    main()
