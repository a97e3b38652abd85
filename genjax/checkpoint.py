"""Checkpoints: one orbax `CheckpointManager` per workdir, with auto-resume.

Orbax writes each step into a temporary directory and renames it when complete, so
a run killed mid-write leaves only an ignored ``*.orbax-checkpoint-tmp-*`` folder.
A step directory that is present but unreadable (a disk that filled up, a file
truncated by hand) is moved aside to ``<workdir>/corrupt_checkpoints/`` and the next
older step is used, so a damaged latest checkpoint never stops a resume.
"""

from __future__ import annotations

import os
import shutil
import time
from typing import TypeVar

import jax
import orbax.checkpoint as ocp
from absl import logging
from orbax.checkpoint import checkpoint_managers

T = TypeVar("T")


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
            try:
                return self._manager.restore(step, args=ocp.args.StandardRestore(abstract))
            except Exception as e:  # any read/format failure means "this step is unusable"
                self._set_aside(step, e)
        return None

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
        """Save ``state`` at ``step`` if it is a save step (or ``force``); True if saved."""
        if not force and step % self.every:
            return False
        if step in self._manager.all_steps():
            return False
        return self._manager.save(step, args=ocp.args.StandardSave(state), force=True)

    def wait(self) -> None:
        """Block until background writes are on disk."""
        self._manager.wait_until_finished()

    def close(self) -> None:
        self._manager.wait_until_finished()
        self._manager.close()
