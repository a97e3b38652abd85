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

A step written with a checksum says so in its own metadata (orbax's
``_CHECKPOINT_METADATA``), and the workdir records the first such step
(``checkpoint_format.json``): a step that should have a checksum and lacks one is
damaged, however it lost it. Only steps of the older format (written before
checksums, in a workdir with no such record) load unverified, with a warning.

With ``best`` (``config.keep_best``), each step is saved with its evaluation's metrics
(orbax's ``metrics`` item) and the best-scoring step is kept besides the latest ``keep``
(orbax's `LatestN` and `BestN` preservation policies); `best_step` finds it read-only.

``read_only=True`` (the evaluator) never creates, deletes or moves anything: it
reads step folders directly. A damaged step is skipped for the next older one; a step
that vanishes while it is read (the trainer's rotation) is not damage: the newest step
is tried again, a few times, before `CheckpointsRotatingError` says so.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import json
import logging as pylogging
import os
import re
import shutil
import sys
import time
from typing import Callable, Mapping, TypeVar

import jax
import numpy as np
import orbax.checkpoint as ocp
from absl import logging
from etils import epath
from orbax.checkpoint import checkpoint_managers

from genjax import record

T = TypeVar("T")

STATE, CHECKSUM = "default", "checksum"  # the items of a step folder
FORMAT = "checkpoint_format.json"  # in the workdir: the first step written with a checksum
STEP_METADATA = "_CHECKPOINT_METADATA"  # orbax's per-step metadata file
METRICS = os.path.join("metrics", "metrics")  # in a step folder: orbax's metrics item
# A step that vanished while being read is retried on the newest step this many times;
# a failed read waits up to VANISH_WAIT seconds for a rotation's delete to finish.
ROTATION_RETRIES, VANISH_WAIT = 5, 1.0


class CheckpointMismatchError(ValueError):
    """A checkpoint's parameter tree does not match the model being restored."""


class CheckpointWriteError(OSError):
    """Writing a checkpoint failed (a full disk, a quota); older checkpoints are intact."""


class CheckpointsUnreadableError(OSError):
    """Checkpoints existed but none could be restored; nothing was started over."""


class CheckpointsRotatingError(OSError):
    """Steps kept vanishing while being read: the run rotates them faster than they are read."""


class ChecksumMismatchError(ValueError):
    """A step decoded, but its leaves do not hash to the checksum written with them."""


class ChecksumMissingError(ValueError):
    """A step written with a checksum has lost it (deleted, or its folder damaged)."""


def _cause(error: Exception) -> str:
    """A one-line reason for a failed read or write: the OS error when tensorstore names one."""
    code = re.search(r"os_error_code='(\d+)'", str(error))
    if code:
        return f"{os.strerror(int(code.group(1)))} [errno {code.group(1)}]"
    first = (str(error).strip().splitlines() or [""])[0].split(" See full TensorStore")[0]
    return f"{type(error).__name__}: {first[:200]}"


def _mentions_orbax(text: str) -> bool:
    """Whether an error's text comes from orbax or TensorStore (their specs and paths)."""
    return "TensorStore" in text or "tensorstore" in text or "orbax" in text


def _is_read_noise(unraisable) -> bool:
    """Whether an unraisable exception is the debris of a failed checkpoint read: orbax's
    other array reads left as coroutines that raised (a TensorStore spec, ~60 lines
    each), or TensorStore's late callbacks into orbax's closed event loop."""
    text = f"{unraisable.exc_value} {unraisable.object!r}"
    return "Event loop is closed" in text or _mentions_orbax(text)


def _route_read_noise(previous):
    """An unraisable hook that logs `_is_read_noise` at debug level and hands anything
    else to ``previous``."""
    def hook(unraisable) -> None:
        if _is_read_noise(unraisable):
            logging.debug("Checkpoint read: %s", unraisable.exc_value)
        else:
            previous(unraisable)
    hook.routes_read_noise = True
    return hook


class _OrbaxDebris(pylogging.Filter):
    """Keeps the reports of a failed checkpoint read or write that genjax states itself
    in one line off stderr, unless ``--verbosity`` is debug: asyncio's "Task exception
    was never retrieved" for a failed read's other array reads (a TensorStore spec
    each), and orbax's own errors and tracebacks from its background save threads (up
    to 325 lines on a full disk)."""

    def filter(self, record: pylogging.LogRecord) -> bool:
        if logging.get_verbosity() >= logging.DEBUG:
            return True
        if record.name == "asyncio":
            text = f"{record.getMessage()} {record.exc_info[1] if record.exc_info else ''}"
            return not _mentions_orbax(text)
        from_orbax = f"{os.sep}orbax{os.sep}" in record.pathname
        return not (from_orbax and (record.levelno >= pylogging.ERROR or record.exc_info))


def quiet_checkpoint_debris() -> None:
    """Keep a failed restore or write to its one-line message, for the rest of the
    process: the debris a failed read leaves (`_is_read_noise`: coroutines that raised,
    TensorStore's late callbacks into orbax's closed event loop, asyncio's reports of
    unretrieved task errors) surfaces when collected, from TensorStore's threads or from
    asyncio after the read has returned, and a failed write's from orbax's threads
    (`_OrbaxDebris`), so the hook and filters that keep it at debug level stay
    installed (they pass every other exception and record on). Idempotent."""
    if not getattr(sys.unraisablehook, "routes_read_noise", False):
        sys.unraisablehook = _route_read_noise(sys.unraisablehook)
    for name in ("asyncio", "absl"):  # orbax logs through absl's logger
        log = pylogging.getLogger(name)
        if not any(isinstance(f, _OrbaxDebris) for f in log.filters):
            log.addFilter(_OrbaxDebris())


@contextlib.contextmanager
def _collect_failed_reads():
    """Collect a failed read's debris at once (see `quiet_checkpoint_debris`)."""
    quiet_checkpoint_debris()
    try:
        yield
    except BaseException:
        gc.collect()  # only a failed read leaves such coroutines: a good restore skips this
        raise


def leaf_path(path) -> str:
    """A pytree path as ``nets/gen/opt_state/0/nu/Dense_0/kernel``."""
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

    return {leaf_path(path): shape(leaf)
            for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]}


def host_values(leaf) -> np.ndarray:
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
        values = host_values(leaf)
        h.update(f"{leaf_path(path)}|{values.dtype.str}|{values.shape};".encode())
        h.update(values.tobytes())
    return h.hexdigest()


def _first_checksummed(path: str) -> int | None:
    """The first step written with a checksum, from the workdir's ``checkpoint_format.json``
    (None where there is none: a workdir of the older format)."""
    try:
        with open(path) as f:
            return int(json.load(f)["checksums_from_step"])
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError):
        return 0  # a damaged record: every step must have its checksum


def _record_format(path: str, step: int) -> None:
    """Write ``checkpoint_format.json`` (atomically) unless it exists: steps from ``step``
    on carry checksums."""
    if os.path.exists(path):
        return
    with record.atomic_file(path) as f:
        json.dump({"checksums_from_step": step, "checksum": "sha256"}, f)


def _preservation(keep: int, best: Callable[[Mapping], float] | None):
    """The latest ``keep`` steps, and with ``best`` also the best-scoring one (orbax's
    `BestN`: steps without metrics are left to the recency rule)."""
    latest = checkpoint_managers.LatestN(keep)
    if best is None:
        return latest
    return checkpoint_managers.AnyPreservationPolicy([latest, checkpoint_managers.BestN(
        get_metric_fn=best, n=1, keep_checkpoints_without_metrics=False)])


def _abstract(template: T) -> T:
    """``template`` as Orbax's restore target: shapes, dtypes and placements. A leaf with
    no placement (a `jax.eval_shape` result) goes on this process's first device, not on
    the devices it was saved from: a checkpoint written from a mesh of 4 devices then
    restores in a process that has one."""
    one = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])

    def leaf(x):
        a = ocp.utils.to_shape_dtype_struct(x)
        if isinstance(a, jax.ShapeDtypeStruct) and a.sharding is None:
            return jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=one)
        return a

    return jax.tree.map(leaf, template)


class Checkpointer:
    """Save every ``every`` steps, keep the latest ``keep``, restore the newest good one.

    Args:
      directory: where step folders live (``<workdir>/checkpoints``).
      every: save when ``step % every == 0`` (and whenever ``force=True``).
      keep: number of most recent checkpoints to preserve.
      asynchronous: write in a background thread (the train loop keeps going).
      read_only: only read (an evaluator next to a live trainer): nothing in
        ``directory`` is ever created, deleted or moved, and damaged steps are skipped.
      best: ``score(metrics)``, higher is better (`genjax.ranking.goodness`): the step
        whose metrics (given to `save`) score highest is kept besides the latest
        ``keep``; steps saved without metrics are kept by recency only.
    """

    def __init__(self, directory: str, *, every: int = 1, keep: int = 3,
                 asynchronous: bool = True, read_only: bool = False,
                 best: Callable[[Mapping], float] | None = None):
        if every <= 0 or keep <= 0:
            raise ValueError(f"checkpoint every ({every}) and keep ({keep}) must be positive.")
        quiet_checkpoint_debris()  # before any read: its debris may come from other threads
        self.directory = os.path.abspath(directory)
        self.every, self.read_only = every, read_only
        self.aside_directory = os.path.join(os.path.dirname(self.directory), "corrupt_checkpoints")
        self._pending: int | None = None  # the step of the newest write asked for
        self.best = best
        self._manager = None if read_only else ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(
                save_interval_steps=1,  # the cadence is decided here, see `save`
                preservation_policy=_preservation(keep, best),
                best_fn=best,  # orbax writes a step's metrics only when it has one
                enable_async_checkpointing=asynchronous,
                cleanup_tmp_directories=True,
            ))

    def metrics(self, step: int) -> dict | None:
        """The metrics saved with ``step`` (None: none, or unreadable), read directly."""
        try:
            with open(os.path.join(self.directory, str(step), METRICS)) as f:
                found = json.load(f)
        except (OSError, ValueError):
            return None
        return found if isinstance(found, dict) else None

    def best_step(self, score: Callable[[Mapping], float]) -> int | None:
        """The step whose saved metrics ``score`` highest (the latest of equals), among
        those with a finite score; None when there is none."""
        scored = [(score(m), s) for s in self.all_steps() if (m := self.metrics(s)) is not None]
        scored = [(v, s) for v, s in scored if np.isfinite(v)]
        return max(scored)[1] if scored else None

    def all_steps(self) -> list[int]:
        """The completed steps, oldest first (a temporary, half-written folder is no step)."""
        if self._manager is not None:
            return sorted(self._manager.all_steps())
        try:
            return sorted(int(n) for n in os.listdir(self.directory) if n.isdigit())
        except (FileNotFoundError, NotADirectoryError):
            return []

    def latest_step(self) -> int | None:
        """The newest completed step (None: none yet)."""
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
        abstract = _abstract(template)
        tried, done, vanished = [], set(), 0
        while todo := [s for s in reversed(self.all_steps()) if s not in done]:
            step = todo[0]
            self._check_structure(step, template)
            try:
                return self._read(step, abstract)
            except Exception as e:  # any read/format/checksum failure: this step is unusable
                if self._vanished(step):  # rotated away under us: not damage
                    vanished += 1
                    self._check_rotation(vanished, step)
                    continue
                done.add(step)
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

    def read(self, step: int, template: T) -> T:
        """``step`` restored into ``template``'s structure and checked (its tree, then its
        checksum, as `restore` checks each step), nothing moved or logged (for a caller
        that only wants that step).

        Raises:
          CheckpointMismatchError: the step holds another model's tree.
          Exception: whatever else makes the step unusable (see `restore`).
        """
        self._check_structure(step, template)
        return self._read(step, _abstract(template))

    def _vanished(self, step: int) -> bool:
        """Whether ``step``'s folder is gone or, for a reader beside a live trainer, goes
        within `VANISH_WAIT` seconds (a rotation's delete under way when a read failed)."""
        path = os.path.join(self.directory, str(step))
        deadline = time.monotonic() + (VANISH_WAIT if self.read_only else 0.0)
        while os.path.isdir(path):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True

    def _check_rotation(self, vanished: int, step: int) -> None:
        """Raise `CheckpointsRotatingError` after `ROTATION_RETRIES` vanished steps."""
        logging.info("Checkpoint step %d vanished while being read; trying the newest.", step)
        if vanished > ROTATION_RETRIES:
            raise CheckpointsRotatingError(
                f"{vanished} checkpoints in {self.directory} were deleted while being read "
                f"(the newest was step {step}): the run is rotating checkpoints faster than "
                f"they can be read. Raise its config.keep_checkpoints or "
                f"config.checkpoint_every, or read after it has finished.")

    def _expects_checksum(self, step: int) -> bool:
        """Whether ``step`` was written with a checksum: its own metadata says so, or the
        workdir's record says checksums were written from an earlier step on."""
        meta = os.path.join(self.directory, str(step), STEP_METADATA)
        try:
            with open(meta) as f:
                written = json.load(f)
            if CHECKSUM in written.get("item_handlers", {}) or \
                    written.get("custom_metadata", {}).get(CHECKSUM):
                return True
        except (OSError, ValueError, AttributeError):
            pass  # no or unreadable metadata: the workdir's record decides
        first = _first_checksummed(self.format_path)
        return first is not None and step >= first

    @property
    def format_path(self) -> str:
        """The workdir's ``checkpoint_format.json`` (`FORMAT`)."""
        return os.path.join(os.path.dirname(self.directory), FORMAT)

    def _read(self, step: int, abstract: T) -> T:
        """Restore one step and verify its checksum (steps of the older format, written
        before checksums, load with a warning).

        Raises:
          ChecksumMissingError: a step written with a checksum has none.
          ChecksumMismatchError: the leaves do not hash to the written checksum.
        """
        path = os.path.join(self.directory, str(step))
        has_checksum = os.path.isdir(os.path.join(path, CHECKSUM))
        if not has_checksum and self._expects_checksum(step):
            raise ChecksumMissingError("its checksum is missing (it was written with one)")
        items = {STATE: ocp.args.StandardRestore(abstract)}
        if has_checksum:
            items[CHECKSUM] = ocp.args.JsonRestore()
        with _collect_failed_reads(), ocp.Checkpointer(ocp.CompositeCheckpointHandler()) as reader:
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
        groups = {"Shape differs (checkpoint vs model)": [
                      f"{k} {have[k]} vs {want[k]}" for k in sorted(want.keys() & have.keys())
                      if have[k] != want[k]],
                  "In the checkpoint, not in this model": sorted(have.keys() - want.keys()),
                  "Missing from the checkpoint": sorted(want.keys() - have.keys())}
        problems = [f"{what}: {len(ks)} ({', '.join(ks[:4])}{', ...' if len(ks) > 4 else ''})"
                    for what, ks in groups.items() if ks]
        if problems:
            raise CheckpointMismatchError(
                f"The checkpoint at step {step} in {self.directory} was written by a different "
                f"model or config. {'. '.join(problems)}. Use another --workdir, or the config "
                f"that wrote it (see config.json next to it).")

    def save(self, step: int, state, *, force: bool = False,
             metrics: Mapping[str, float] | None = None) -> bool:
        """Save ``state`` and its checksum at ``step`` if it is a save step (or ``force``);
        True if saved. ``metrics``: the step's evaluation, ranked by ``best`` (ignored
        without it).

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
            _record_format(self.format_path, step)
            saved = self._manager.save(step, args=ocp.args.Composite(**items), force=True,
                                       custom_metadata={CHECKSUM: "sha256"},
                                       metrics=None if self.best is None else dict(metrics or {}))
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
        """Wait for background writes, then release the manager (nothing to do read-only)."""
        if self._manager is not None:
            self._manager.wait_until_finished()
            self._manager.close()
