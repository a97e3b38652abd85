"""One run per workdir: an exclusive lock that a run holds from before its first write.

Two launchers on one workdir would otherwise delete each other's in-progress
checkpoints (orbax cleans up temporary step folders it finds at start), write every
metric row twice and leave no usable checkpoint. `hold` takes an ``fcntl`` lock on
``<workdir>/run.lock``: the kernel drops it when the holding process ends, however it
ends (a ``SIGKILL`` included), so a dead run never blocks the next one, and no stale
file has to be cleaned up. The holder writes its host, pid and start time into the
file for the message a second launcher prints.

The lock belongs to the run, not to a process: in a multi-host run only process 0
takes it, and worker processes of one run share their coordinator's. Readers (the
evaluator) take no lock. ``fcntl`` locks are advisory and local-kernel on most
filesystems; on network filesystems (NFS, Lustre, GCS FUSE) whether they hold across
machines depends on the mount, and this is untested here.

A run's child processes (a population's workers, a sweep's trials) die with the process
that started them: it names itself in their environment (`child_env`) and each child's
first act is `die_with_parent`, so a killed launcher leaves no orphan training that
would hold a lock or race its retry.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import os
import signal
import socket
import time
from typing import Iterator

LOCK = "run.lock"
PARENT = "GENJAX_PARENT"  # a child's environment: the pid it dies with
_PR_SET_PDEATHSIG = 1


class WorkdirInUseError(OSError):
    """Another live run holds the workdir's lock."""


def _holder(path: str) -> str:
    """Who holds the lock, as its holder wrote it ("pid 12 on host h since ...")."""
    try:
        with open(path) as f:
            text = f.read().strip()
    except OSError:
        text = ""
    return text or "another process (it has not written its name yet)"


def _describe_self() -> str:
    return (f"pid {os.getpid()} on host {socket.gethostname()} since "
            f"{time.strftime('%Y-%m-%d %H:%M:%S %Z')}")


def acquire(workdir: str) -> int:
    """Take the lock of ``workdir`` (which must exist); returns the open file descriptor
    that holds it (close it, or end the process, to release).

    Raises:
      WorkdirInUseError: another live process holds it; nothing was written.
    """
    path = os.path.join(workdir, LOCK)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise WorkdirInUseError(
            f"{workdir} is in use by {_holder(path)} (it holds {LOCK}); wait for that run to "
            f"end, or choose another --workdir.") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, (_describe_self() + "\n").encode(), 0)
    return fd


def release(fd: int) -> None:
    """Release a lock taken by `acquire` (the file stays: deleting it would race)."""
    os.close(fd)


@contextlib.contextmanager
def hold(workdir: str, enabled: bool = True) -> Iterator[None]:
    """Hold ``workdir``'s lock for the block (``enabled=False``: take none, for the
    processes of a run whose coordinator holds it)."""
    fd = acquire(workdir) if enabled else None
    try:
        yield
    finally:
        if fd is not None:
            release(fd)


def child_env(env: dict[str, str] | None = None) -> dict[str, str]:
    """``env`` (default this process's environment) for a child that dies with this
    process (`die_with_parent`)."""
    return {**(os.environ if env is None else env), PARENT: str(os.getpid())}


def die_with_parent() -> None:
    """In a child started with `child_env`: ask the kernel to kill this process when its
    parent dies, or end at once if the parent is gone already (nothing when not such a
    child). Done by the child, not between fork and exec: the parent may be
    multithreaded. The mark is removed, so this process's own children (started
    otherwise) do not inherit a parent that is not theirs."""
    parent = os.environ.pop(PARENT, None)
    if not parent:
        return
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != int(parent):  # it died before the request was in place
        os._exit(1)
