"""genjax bijectors as `distrax.Bijector`s, so that a genjax flow composes with distrax's
distributions and bijectors (``distrax.Transformed``, ``distrax.Chain``, ...).

distrax is optional (``pip install distrax``; the ``test`` extra installs it): this module
imports it when called. Import distrax before TensorFlow (which `genjax.data` loads):
TFP, under distrax, requires the ``tf_keras`` package once TensorFlow is in the process.

genjax's ``forward`` maps data to noise; distrax's ``Transformed(base, bijector)``
samples by ``bijector.forward`` of base draws, so the wrapped bijector's forward is the
genjax ``inverse`` unless ``data_to_noise=True``.
"""

from __future__ import annotations

import flax.linen as nn
import jax


def as_distrax(module: nn.Module, params, *, event_ndims: int = 1, data_to_noise: bool = False):
    """``module`` (with ``forward``/``inverse`` returning per-example log-dets over
    ``event_ndims`` trailing axes) with ``params`` as a `distrax.Bijector`.

    By default the bijector maps noise to data (genjax's ``inverse``), the direction
    ``distrax.Transformed`` expects; ``data_to_noise=True`` wraps ``forward`` as forward.
    """
    import distrax

    to_noise = lambda x: module.apply({"params": params}, x, method="forward")  # noqa: E731
    to_data = lambda z: module.apply({"params": params}, z, method="inverse")  # noqa: E731
    forward, inverse = (to_noise, to_data) if data_to_noise else (to_data, to_noise)

    class _Wrapped(distrax.Bijector):
        def __init__(self):
            super().__init__(event_ndims_in=event_ndims)

        def forward_and_log_det(self, x: jax.Array):
            return _batched(forward, x, event_ndims)

        def inverse_and_log_det(self, y: jax.Array):
            return _batched(inverse, y, event_ndims)

    return _Wrapped()


def _batched(fn, x: jax.Array, event_ndims: int):
    """``fn`` (which needs a leading batch axis) on ``x`` with any batch shape, including none."""
    batch = x.shape[:x.ndim - event_ndims]
    flat = x.reshape((-1,) + x.shape[x.ndim - event_ndims:])
    y, log_det = fn(flat)
    return y.reshape(batch + y.shape[1:]), log_det.reshape(batch)
