"""TensorFlow for tf.data and tfds only: imported quietly and without its Keras load.

Every module of `genjax.data` that needs TensorFlow or tfds imports this one first.
"""

import os
import sys


def import_tensorflow() -> None:
    """Import TensorFlow once, quietly and without the eager Keras load at the end of its
    ``__init__`` (about 3.5 s of every experiment start here; genjax uses only tf.data and
    tfds). TensorFlow catches the ImportError; Keras imports normally afterwards, for
    whoever wants it.

    Quiet: TensorFlow's C++ INFO lines are turned off unless ``TF_CPP_MIN_LOG_LEVEL`` is
    already set; its warnings and errors still show. On CPUs with AVX-512 TensorFlow
    turns its oneDNN custom ops on and announces it at import whatever the log level;
    tf.data and tfds use none of them, so they stay off unless ``TF_ENABLE_ONEDNN_OPTS``
    is already set (benchmarks/throughput.py sets it for its Keras peer).
    TensorFlow sees no GPU: it only feeds host batches, and JAX owns the accelerators.
    """
    if "tensorflow" in sys.modules or "keras.src.optimizers" in sys.modules:
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    sys.modules["keras.src.optimizers"] = None  # type: ignore[assignment]
    try:
        import tensorflow as tf
    finally:
        del sys.modules["keras.src.optimizers"]
    tf.config.set_visible_devices([], "GPU")


import_tensorflow()
