"""Checkpoints: one orbax `CheckpointManager` per workdir, with auto-resume.

Orbax writes each step into a temporary directory and renames it when complete, so
a run killed mid-write leaves only an ignored ``*.orbax-checkpoint-tmp-*`` folder.
A step directory that is present but unreadable (a disk that filled up, a file
truncated by hand) is moved aside to ``<workdir>/corrupt_checkpoints/`` and the next
older step is used, so a damaged latest checkpoint never stops a resume. A readable
checkpoint of another model or config is not damaged: restoring it raises
`CheckpointMismatchError` naming the mismatching entries, and it stays where it is.
A write that fails (a full disk) raises `CheckpointWriteError` with the OS's reason;
the half-written step stays a temporary folder and the older checkpoints stay usable.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import time
from typing import TypeVar

import jax
import orbax.checkpoint as ocp
from absl import logging
from orbax.checkpoint import checkpoint_managers

T = TypeVar("T")


class CheckpointMismatchError(ValueError):
    """A checkpoint's parameter tree does not match the model being restored."""


class CheckpointWriteError(OSError):
    """Writing a checkpoint failed (a full disk, a quota); older checkpoints are intact."""


def _cause(error: Exception) -> str:
    """A one-line reason for a failed write: the OS error when tensorstore names one."""
    code = re.search(r"os_error_code='(\d+)'", str(error))
    if code:
        return f"{os.strerror(int(code.group(1)))} [errno {code.group(1)}]"
    return f"{type(error).__name__}: {str(error).splitlines()[0][:200]}"


def _shapes(tree) -> dict[str, tuple[int, ...]]:
    """Leaf path ("nets/gen/params/Dense_0/kernel") -> shape, for any pytree or orbax metadata."""
    def name(entry) -> str:
        for attr in ("key", "name", "idx"):
            if hasattr(entry, attr):
                return str(getattr(entry, attr))
        return str(entry)

    def shape(leaf) -> tuple[int, ...]:  # typed keys are stored as their key data
        dtype = getattr(leaf, "dtype", None)
        if dtype is not None and jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key):
            leaf = jax.eval_shape(jax.random.key_data, leaf)
        return tuple(getattr(leaf, "shape", ()))

    return {"/".join(map(name, path)): shape(leaf)
            for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]}


class Checkpointer:
    """Save every ``every`` steps, keep the latest ``keep``, restore the newest good one.

    Args:
      directory: where step folders live (``<workdir>/checkpoints``).
      every: save when ``step % every == 0`` (and whenever ``force=True``).
      keep: number of most recent checkpoints to preserve.
      asynchronous: write in a background thread (the train loop keeps going).
    """

    def __init__(self, directory: str, *, every: int, keep: int = 3, asynchronous: bool = True):
        if every <= 0 or keep <= 0:
            raise ValueError(f"checkpoint every ({every}) and keep ({keep}) must be positive.")
        self.directory = os.path.abspath(directory)
        self.every = every
        self._pending: int | None = None  # the step of the newest write asked for
        self._manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(
                save_interval_steps=1,  # the cadence is decided here, see `save`
                preservation_policy=checkpoint_managers.LatestN(keep),
                enable_async_checkpointing=asynchronous,
                cleanup_tmp_directories=True,
            ))

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def restore(self, template: T) -> T | None:
        """The newest readable checkpoint with ``template``'s structure, or None.

        Unreadable step folders are moved aside (never deleted) with a warning.
        """
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, template)
        for step in sorted(self._manager.all_steps(), reverse=True):
            self._check_structure(step, template)
            try:
                return self._manager.restore(step, args=ocp.args.StandardRestore(abstract))
            except Exception as e:  # any read/format failure means "this step is unusable"
                self._set_aside(step, e)
        return None

    def check_compatible(self, template) -> None:
        """Raise `CheckpointMismatchError` if the newest checkpoint holds another tree than
        ``template`` (shapes suffice: pass ``jax.eval_shape`` of the init, so a resume of
        the wrong config fails before anything compiles)."""
        latest = self._manager.latest_step()
        if latest is not None:
            self._check_structure(latest, template)

    def _check_structure(self, step: int, template) -> None:
        """Raise `CheckpointMismatchError` when the step's recorded tree (if readable) differs
        from ``template``'s: another config's checkpoint is not a corrupt one."""
        try:
            recorded = ocp.StandardCheckpointer().metadata(
                os.path.join(self.directory, str(step), "default")).item_metadata.tree
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

    def _set_aside(self, step: int, error: Exception) -> None:
        src = os.path.join(self.directory, str(step))
        dst = os.path.join(os.path.dirname(self.directory), "corrupt_checkpoints",
                           f"{step}-{int(time.time())}")
        logging.warning("Checkpoint at step %d is unreadable (%s: %s); moved to %s and "
                        "falling back to an older one.", step, type(error).__name__, error, dst)
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        shutil.move(src, dst)
        self._manager.reload()

    def save(self, step: int, state, *, force: bool = False) -> bool:
        """Save ``state`` at ``step`` if it is a save step (or ``force``); True if saved.

        Raises:
          CheckpointWriteError: this write, or the previous background one, failed.
        """
        if not force and step % self.every:
            return False
        if step in self._manager.all_steps():
            return False
        with self._write_errors():
            saved = self._manager.save(step, args=ocp.args.StandardSave(state), force=True)
        self._pending = step
        return saved

    def wait(self) -> None:
        """Block until background writes are on disk.

        Raises:
          CheckpointWriteError: a background write failed.
        """
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
        self._manager.wait_until_finished()
        self._manager.close()
