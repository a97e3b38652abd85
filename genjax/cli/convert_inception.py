"""Convert pytorch-fid's published InceptionV3 weights to the .npz genjax loads.

  python -m genjax.cli.convert_inception --pth=pt_inception-2015-12-05-6726825d.pth \\
      --out=inception_fid.npz

Needs torch (only here; genjax itself never imports it). The .pth is read with
``torch.load(weights_only=True)``, which refuses arbitrary pickled objects; its SHA-256
must start with the prefix in its published name. The .npz holds plain float32 arrays
under the state dict's own names plus the source hash, and is loaded with
``allow_pickle=False`` by `genjax.metrics.inception`.
"""

import numpy as np
from absl import app, flags

from genjax.metrics import inception

_PTH = flags.DEFINE_string("pth", inception.PTH_NAME, "pytorch-fid's weights file.")
_OUT = flags.DEFINE_string("out", "inception_fid.npz", "Where to write the .npz.")


def convert(pth: str, out: str) -> str:
    """Write ``out`` from ``pth``; returns the source SHA-256."""
    import torch

    sha = inception.file_sha256(pth)
    if not sha.startswith(inception.PTH_SHA256_PREFIX):
        raise ValueError(f"{pth} has SHA-256 {sha}; {inception.PTH_NAME} starts with "
                         f"{inception.PTH_SHA256_PREFIX}. Download it from {inception.PTH_URL}.")
    state = torch.load(pth, map_location="cpu", weights_only=True)
    arrays = {k: v.numpy().astype(np.float32) for k, v in state.items()
              if not k.endswith("num_batches_tracked")}
    inception.variables_from_state_dict(arrays)  # every variable present with its shape
    np.savez(out, **arrays, **{inception.SOURCE_KEY: np.array(sha)})
    return sha


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    print(f"Wrote {_OUT.value} from {_PTH.value} (SHA-256 {convert(_PTH.value, _OUT.value)}).")


if __name__ == "__main__":
    app.run(main)
