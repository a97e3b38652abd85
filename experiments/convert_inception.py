"""Convert pytorch-fid's InceptionV3 weights: ``python -m genjax.cli.convert_inception``."""

from absl import app

from genjax.cli import convert_inception

if __name__ == "__main__":
    app.run(convert_inception.main)
