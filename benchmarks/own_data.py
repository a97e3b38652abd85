"""Own data as a new user brings it: the mnist5k digits exported as a folder of PNGs train
`ddpm_mnist` through ``--config.dataset=folder:...`` to the embedded dataset's quality.

  python -m benchmarks.own_data --workdir=runs/own_data --seeds=0,1,2

1. Exports the 5,000 digits as ``<workdir>/digits/<label>/<index>.png`` (the file names
   keep mnist5k's order, so the folder's last fifth is mnist5k's test split).
2. Times the folder's preparation into a fresh tfds directory, and a second look at the
   unchanged folder (which must not prepare again).
3. Registers the shipped mnist5k classifier as the folder's domain classifier (the
   digits are the same, so both sources are scored by the same weights; a new dataset
   has no classifier until one is trained or registered for its id), in
   ``<workdir>/cache`` (``GENJAX_CACHE``, for these runs only).
4. Trains ``ddpm_mnist`` (its full config) for every seed on the embedded dataset and on
   the folder, one run after another (``genjax-train diffusion``), and reads each run's
   final row: domain FID, the rarest class's share, the test bound in bits/dim.

Writes ``benchmarks/results/own_data.json`` (with the machine) and prints the table of
docs/usage.md. A run whose workdir already holds its final row is read, not retrained.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np
from absl import app, flags

from benchmarks import machine

RESULTS = os.path.join(os.path.dirname(__file__), "results")
KEYS = {"fid": "test/domain_fid", "min_class_share": "test/domain_min_class_share",
        "bits_per_dim": "test/bits_per_dim"}

_WORKDIR = flags.DEFINE_string("workdir", "runs/own_data", "Parent of the digits and runs.")
_SEEDS = flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds per source.")
_CONFIG = flags.DEFINE_string("config", "ddpm_mnist", "The config trained on both sources.")
_OUT = flags.DEFINE_string("out", os.path.join(RESULTS, "own_data.json"), "Result file.")


def export_digits(root: str) -> int:
    """mnist5k's 5,000 digits as PNGs under ``root/<label>/<index>.png``, numbered in the
    order mnist5k is generated in (4,000 train, then 1,000 test), which the folder keeps."""
    from PIL import Image

    from genjax.data import mnist5k

    images, labels = mnist5k._shuffled_arrays()
    for index, (image, label) in enumerate(zip(images, labels)):
        os.makedirs(os.path.join(root, str(label)), exist_ok=True)
        Image.fromarray(image[..., 0]).save(os.path.join(root, str(label), f"{index:05d}.png"))
    return len(images)


def time_preparation(root: str, data_dir: str) -> dict:
    """Seconds to prepare the folder into a fresh ``data_dir``, then to find it prepared."""
    from genjax import data

    shutil.rmtree(data_dir, ignore_errors=True)
    spec = data.DataSpec(name=f"folder:{root}", data_dir=data_dir)
    start = time.perf_counter()
    data.get_builder(spec)
    first = time.perf_counter() - start
    start = time.perf_counter()
    data.get_builder(spec)
    again = time.perf_counter() - start
    return {"prepare_s": round(first, 2), "unchanged_again_s": round(again, 2),
            "dataset_id": data.dataset_id(spec)}


def register_shipped_classifier(dataset_id: str) -> str:
    """The shipped mnist5k classifier as the registry entry of ``dataset_id`` at 28x28x1."""
    from genjax.metrics import domain

    shipped = domain.read_entry(domain.WEIGHTS_DIR)
    entry = domain.export(domain.load_params(), domain.entry_dir(dataset_id, domain.INPUT_SHAPE),
                          dataset_id=dataset_id, image_shape=domain.INPUT_SHAPE,
                          num_classes=shipped.num_classes, test_accuracy=shipped.test_accuracy,
                          steps=shipped.steps)
    return entry.directory


def train(dataset: str, seed: int, workdir: str, data_dir: str) -> dict:
    """The final row of ``config`` trained on ``dataset`` with ``seed`` (trained unless
    its workdir already holds it), with the run's wall-clock seconds."""
    metrics = os.path.join(workdir, "metrics.jsonl")
    start = time.perf_counter()
    if not _final(metrics):
        subprocess.run(["genjax-train", "diffusion", f"--config={_CONFIG.value}",
                        f"--config.dataset={dataset}", f"--config.seed={seed}",
                        f"--config.data_dir={data_dir}", f"--workdir={workdir}"], check=True)
    row = _final(metrics)
    return {"seed": seed, "wall_s": round(time.perf_counter() - start, 1),
            **{k: row.get(key) for k, key in KEYS.items()}}


def _final(path: str) -> dict | None:
    if not os.path.exists(path):
        return None
    rows = [json.loads(line) for line in open(path) if line.strip()]
    return next((r for r in reversed(rows) if r.get("final")), None)


def main(argv):
    del argv
    root = os.path.abspath(_WORKDIR.value)
    digits, data_dir = os.path.join(root, "digits"), os.path.join(root, "tfds")
    os.environ["GENJAX_CACHE"] = os.path.join(root, "cache")  # the runs' classifiers, features
    if not os.path.isdir(digits):
        export_digits(digits)
    result = {"machine": machine.cpu(), "config": _CONFIG.value, "command": " ".join(sys.argv),
              "preparation": time_preparation(digits, data_dir), "runs": {}}
    register_shipped_classifier(result["preparation"]["dataset_id"])
    for name, dataset in (("embedded", "mnist5k"), ("folder", f"folder:{digits}")):
        result["runs"][name] = [train(dataset, int(s), os.path.join(root, f"{name}_seed{s}"),
                                      data_dir) for s in _SEEDS.value]
        result[f"median_{name}"] = {k: float(np.median([r[k] for r in result["runs"][name]]))
                                    for k in KEYS}
    with open(_OUT.value, "w") as f:
        json.dump(result, f, indent=2)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    app.run(main)
