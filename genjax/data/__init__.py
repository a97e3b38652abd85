"""Data: the embedded offline `mnist5k` tfds dataset and the shared input pipeline."""

import sys


def _import_tensorflow_without_keras() -> None:
    """Import TensorFlow without the eager Keras load at the end of its ``__init__`` (about
    3.5 s of every experiment start here; genjax uses only tf.data and tfds). TensorFlow
    catches the ImportError; Keras imports normally afterwards, for whoever wants it."""
    if "tensorflow" in sys.modules or "keras.src.optimizers" in sys.modules:
        return
    sys.modules["keras.src.optimizers"] = None  # type: ignore[assignment]
    try:
        import tensorflow  # noqa: F401
    finally:
        del sys.modules["keras.src.optimizers"]


_import_tensorflow_without_keras()

from genjax.data.pipeline import (  # noqa: E402
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
