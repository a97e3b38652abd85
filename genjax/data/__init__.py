"""Data: the embedded offline `mnist5k` tfds dataset, own data (`genjax.data.own`:
``folder:<path>``, ``npz:<path>``) and the shared input pipeline.

`Batch` (the host batch type) is importable without TensorFlow; the pipeline's names
(`train_iterator`, `eval_iterator`, `DataSpec`, ...) load TensorFlow on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

import numpy as np

# A host batch: ``image`` [B, H, W, C], ``label`` [B] (and ``mask`` [B] in evaluation).
Batch = dict[str, np.ndarray]
# How training batches are served (`DataSpec.source`; see `genjax.data.pipeline`).
SOURCES = ("auto", "tfds", "memory")

__all__ = [
    "OFFLINE_ALTERNATIVE", "PREPROCESS_MODES", "SOURCES", "Batch", "DatasetDamagedError",
    "DatasetUnavailableError", "DataSpec", "LEVEL_VALUES", "dataset_id", "eval_iterator",
    "get_builder", "host_batch_size", "num_examples", "spec_fields", "split_for_devices",
    "train_iterator",
]


def __getattr__(name: str) -> Any:
    """The pipeline's names, imported (with TensorFlow) when first asked for."""
    if name in __all__:
        return getattr(importlib.import_module("genjax.data.pipeline"), name)
    raise AttributeError(f"module 'genjax.data' has no attribute {name!r}")
