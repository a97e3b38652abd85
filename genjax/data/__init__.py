"""Data: the embedded offline `mnist5k` tfds dataset and the shared input pipeline."""

from genjax.data.pipeline import (
    OFFLINE_ALTERNATIVE,
    PREPROCESS_MODES,
    Batch,
    DatasetUnavailableError,
    DataSpec,
    eval_iterator,
    get_builder,
    host_batch_size,
    num_examples,
    split_for_devices,
    train_iterator,
)

__all__ = [
    "OFFLINE_ALTERNATIVE", "PREPROCESS_MODES", "Batch", "DatasetUnavailableError", "DataSpec",
    "eval_iterator", "get_builder", "host_batch_size", "num_examples", "split_for_devices",
    "train_iterator",
]
