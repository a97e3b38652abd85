"""Checkpoints: one orbax `CheckpointManager` per workdir, with auto-resume.

Orbax writes each step into a temporary directory and renames it when complete, so
a run killed mid-write leaves only an ignored ``*.orbax-checkpoint-tmp-*`` folder.
Every step holds the state (item ``default``) and a SHA-256 of the state's leaves
(item ``checksum``), so damage inside a data file that still decodes is caught on
restore. A step that is unreadable or fails its checksum (a disk that filled up, a
file truncated or overwritten) is moved aside to ``<workdir>/corrupt_checkpoints/``
and the next older step is used. When checkpoints existed and none is usable,
`restore` raises `CheckpointsUnreadableError` listing what was tried: a run never
silently starts over. A readable checkpoint of another model or config is not
damaged: it raises `CheckpointMismatchError` naming the mismatching entries and stays
where it is. A write that fails (a full disk) raises `CheckpointWriteError` with the
OS's reason; the half-written step stays a temporary folder, older steps stay usable.

``read_only=True`` (the evaluator) never creates, deletes or moves anything: it
reads step folders directly, and a step that is unreadable or vanishes while it
reads (the trainer's rotation) is skipped for the next newer-to-older one.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import os
import re
import shutil
import sys
import time
from typing import TypeVar

import jax
import numpy as np
import orbax.checkpoint as ocp
from absl import logging
from etils import epath
from orbax.checkpoint import checkpoint_managers

T = TypeVar("T")

STATE, CHECKSUM = "default", "checksum"  # the items of a step folder


class CheckpointMismatchError(ValueError):
    """A checkpoint's parameter tree does not match the model being restored."""


class CheckpointWriteError(OSError):
    """Writing a checkpoint failed (a full disk, a quota); older checkpoints are intact."""


class CheckpointsUnreadableError(OSError):
    """Checkpoints existed but none could be restored; nothing was started over."""


class ChecksumMismatchError(ValueError):
    """A step decoded, but its leaves do not hash to the checksum written with them."""


def _cause(error: Exception) -> str:
    """A one-line reason for a failed read or write: the OS error when tensorstore names one."""
    code = re.search(r"os_error_code='(\d+)'", str(error))
    if code:
        return f"{os.strerror(int(code.group(1)))} [errno {code.group(1)}]"
    first = (str(error).strip().splitlines() or [""])[0].split(" See full TensorStore")[0]
    return f"{type(error).__name__}: {first[:200]}"


@contextlib.contextmanager
def _quiet_failed_reads():
    """A failed restore leaves orbax's other array reads as coroutines that raised; Python
    prints each (a TensorStore spec, ~60 lines) when they are collected. Collect them
    here and log them at debug level: the one-line warning says what failed."""
    hook = sys.unraisablehook
    sys.unraisablehook = lambda u: logging.debug("Checkpoint read: %s", u.exc_value)
    try:
        yield
    except BaseException:
        gc.collect()  # only a failed read leaves such coroutines: a good restore skips this
        raise
    finally:
        sys.unraisablehook = hook


def _leaf_path(path) -> str:
    def name(entry) -> str:
        for attr in ("key", "name", "idx"):
            if hasattr(entry, attr):
                return str(getattr(entry, attr))
        return str(entry)
    return "/".join(map(name, path))


def _is_key(leaf) -> bool:
    dtype = getattr(leaf, "dtype", None)
    return dtype is not None and jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key)


def _shapes(tree) -> dict[str, tuple[int, ...]]:
    """Leaf path ("nets/gen/params/Dense_0/kernel") -> shape, for any pytree or orbax metadata."""
    def shape(leaf) -> tuple[int, ...]:  # typed keys are stored as their key data
        if _is_key(leaf):
            leaf = jax.eval_shape(jax.random.key_data, leaf)
        return tuple(getattr(leaf, "shape", ()))

    return {_leaf_path(path): shape(leaf)
            for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]}


def _host(leaf) -> np.ndarray:
    """A leaf's values on this host (typed keys as their key data; a replicated global
    array from its first local shard)."""
    if _is_key(leaf):
        leaf = jax.random.key_data(leaf)
    if isinstance(leaf, jax.Array) and not leaf.is_fully_addressable:
        leaf = leaf.addressable_shards[0].data
    return np.ascontiguousarray(np.asarray(leaf))


def state_digest(tree) -> str:
    """SHA-256 over every leaf's path, dtype, shape and bytes: equal exactly when the
    states are bitwise equal (what a restored checkpoint must be to the saved one)."""
    h = hashlib.sha256()
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        values = _host(leaf)
        h.update(f"{_leaf_path(path)}|{values.dtype.str}|{values.shape};".encode())
        h.update(values.tobytes())
    return h.hexdigest()


class Checkpointer:
    """Save every ``every`` steps, keep the latest ``keep``, restore the newest good one.

    Args:
      directory: where step folders live (``<workdir>/checkpoints``).
      every: save when ``step % every == 0`` (and whenever ``force=True``).
      keep: number of most recent checkpoints to preserve.
      asynchronous: write in a background thread (the train loop keeps going).
      read_only: only read (an evaluator next to a live trainer): nothing in
        ``directory`` is ever created, deleted or moved, and damaged steps are skipped.
    """

    def __init__(self, directory: str, *, every: int = 1, keep: int = 3,
                 asynchronous: bool = True, read_only: bool = False):
        if every <= 0 or keep <= 0:
            raise ValueError(f"checkpoint every ({every}) and keep ({keep}) must be positive.")
        self.directory = os.path.abspath(directory)
        self.every, self.read_only = every, read_only
        self.aside_directory = os.path.join(os.path.dirname(self.directory), "corrupt_checkpoints")
        self._pending: int | None = None  # the step of the newest write asked for
        self._manager = None if read_only else ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(
                save_interval_steps=1,  # the cadence is decided here, see `save`
                preservation_policy=checkpoint_managers.LatestN(keep),
                enable_async_checkpointing=asynchronous,
                cleanup_tmp_directories=True,
            ))

    def all_steps(self) -> list[int]:
        """The completed steps, oldest first (a temporary, half-written folder is no step)."""
        if self._manager is not None:
            return sorted(self._manager.all_steps())
        try:
            return sorted(int(n) for n in os.listdir(self.directory) if n.isdigit())
        except FileNotFoundError:
            return []

    def latest_step(self) -> int | None:
        steps = self.all_steps()
        return steps[-1] if steps else None

    def set_aside(self) -> list[str]:
        """The damaged step folders moved to ``corrupt_checkpoints/`` so far (``<step>-<time>``)."""
        try:
            return sorted(os.listdir(self.aside_directory))
        except FileNotFoundError:
            return []

    def restore(self, template: T, *, start_over: bool = False) -> T | None:
        """The newest usable checkpoint with ``template``'s structure, or None if there
        never was one.

        Unusable steps (unreadable, or failing their checksum) are moved aside with a
        one-line warning (skipped when read-only) and the next older step is tried.

        Raises:
          CheckpointMismatchError: a readable step holds another model's tree.
          CheckpointsUnreadableError: checkpoints existed (here, or set aside earlier)
            and none is usable, unless ``start_over`` (then None: train from step 0).
        """
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, template)
        tried = []
        for step in reversed(self.all_steps()):
            self._check_structure(step, template)
            try:
                return self._read(step, abstract)
            except Exception as e:  # any read/format/checksum failure: this step is unusable
                tried.append(f"step {step} ({_cause(e)})")
                self._skip(step, e)
        aside = [] if self.read_only else self.set_aside()
        if not (tried or aside) or start_over:
            return None
        found = "; ".join(tried) if tried else f"earlier runs set aside {', '.join(aside)}"
        raise CheckpointsUnreadableError(
            f"No usable checkpoint in {self.directory}: {found}. "
            + ("" if self.read_only else
               f"The damaged ones are kept in {self.aside_directory}. Nothing was started "
               f"over: to train from step 0 in this workdir on purpose, add "
               f"--config.start_over=True."))

    def _read(self, step: int, abstract: T) -> T:
        """Restore one step and verify its checksum (steps written without one load with
        a warning)."""
        path = os.path.join(self.directory, str(step))
        has_checksum = os.path.isdir(os.path.join(path, CHECKSUM))
        items = {STATE: ocp.args.StandardRestore(abstract)}
        if has_checksum:
            items[CHECKSUM] = ocp.args.JsonRestore()
        with _quiet_failed_reads(), ocp.Checkpointer(ocp.CompositeCheckpointHandler()) as reader:
            restored = reader.restore(path, args=ocp.args.Composite(**items))
        state = restored[STATE]
        if not has_checksum:
            logging.warning("Checkpoint step %d in %s has no checksum (an older format); "
                            "restored unverified.", step, self.directory)
            return state
        want, got = restored[CHECKSUM]["sha256"], state_digest(state)
        if want != got:
            raise ChecksumMismatchError(f"content checksum mismatch: written {want[:12]}, "
                                        f"read {got[:12]}")
        return state

    def _skip(self, step: int, error: Exception) -> None:
        """Log one line for an unusable step and, unless read-only, move it aside."""
        logging.debug("Checkpoint step %d unusable:", step, exc_info=error)
        if self.read_only:
            logging.warning("Checkpoint step %d in %s is unusable (%s); trying an older one.",
                            step, self.directory, _cause(error))
            return
        dst = os.path.join(self.aside_directory, f"{step}-{int(time.time())}")
        logging.warning("Checkpoint step %d is unusable (%s); moved to %s, trying an older one.",
                        step, _cause(error), dst)
        os.makedirs(self.aside_directory, exist_ok=True)
        shutil.move(os.path.join(self.directory, str(step)), dst)
        self._manager.reload()

    def check_compatible(self, template) -> None:
        """Raise `CheckpointMismatchError` if the newest checkpoint holds another tree than
        ``template`` (shapes suffice: pass ``jax.eval_shape`` of the init, so a resume of
        the wrong config fails before anything compiles or is written)."""
        latest = self.latest_step()
        if latest is not None:
            self._check_structure(latest, template)

    def _check_structure(self, step: int, template) -> None:
        """Raise `CheckpointMismatchError` when the step's recorded tree (if readable) differs
        from ``template``'s: another config's checkpoint is not a corrupt one."""
        try:
            recorded = ocp.StandardCheckpointHandler().metadata(
                epath.Path(self.directory, str(step), STATE)).tree
        except Exception:  # unreadable metadata: let the restore attempt judge the step
            return
        want, have = _shapes(template), _shapes(recorded)
        groups = {"shape differs (checkpoint vs model)": [
                      f"{k} {have[k]} vs {want[k]}" for k in sorted(want.keys() & have.keys())
                      if have[k] != want[k]],
                  "in the checkpoint, not in this model": sorted(have.keys() - want.keys()),
                  "missing from the checkpoint": sorted(want.keys() - have.keys())}
        problems = [f"{what}: {len(ks)} ({', '.join(ks[:4])}{', ...' if len(ks) > 4 else ''})"
                    for what, ks in groups.items() if ks]
        if problems:
            raise CheckpointMismatchError(
                f"The checkpoint at step {step} in {self.directory} was written by a different "
                f"model or config. {'; '.join(problems)}. Use another --workdir, or the config "
                f"that wrote it (see config.json next to it).")

    def save(self, step: int, state, *, force: bool = False) -> bool:
        """Save ``state`` and its checksum at ``step`` if it is a save step (or ``force``);
        True if saved.

        Raises:
          CheckpointWriteError: this write, or the previous background one, failed.
        """
        if self._manager is None:
            raise RuntimeError(f"{self.directory} was opened read-only.")
        if not force and step % self.every:
            return False
        if step in self._manager.all_steps():
            return False
        items = {STATE: ocp.args.StandardSave(state),
                 CHECKSUM: ocp.args.JsonSave({"sha256": state_digest(state)})}
        with self._write_errors():
            saved = self._manager.save(step, args=ocp.args.Composite(**items), force=True)
        self._pending = step
        return saved

    def wait(self) -> None:
        """Block until background writes are on disk.

        Raises:
          CheckpointWriteError: a background write failed.
        """
        if self._manager is not None:
            with self._write_errors():
                self._manager.wait_until_finished()

    @contextlib.contextmanager
    def _write_errors(self):
        """Turn a failed write (seen here, or surfacing late from the background thread)
        into one clear `CheckpointWriteError`. Orbax writes into a temporary folder and
        renames it only when complete, so the failed step never looks like a checkpoint."""
        try:
            yield
        except Exception as e:
            self._manager.reload()
            raise CheckpointWriteError(
                f"Could not write the checkpoint of step {self._pending} to {self.directory}: "
                f"{_cause(e)}. The previous checkpoint (step {self._manager.latest_step()}) is "
                f"intact; free space and run the same command again to resume from it.") from e

    def close(self) -> None:
        if self._manager is not None:
            self._manager.wait_until_finished()
            self._manager.close()
