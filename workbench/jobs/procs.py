"""Job processes: start time (guards pid reuse), liveness, and stopping a whole process group."""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path

from ..train.runs import pid_alive


def process_start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (``/proc/PID/stat`` field 22), None if gone.

    A pid can be reused by an unrelated process after the job ends; pid + start time cannot.
    On systems without ``/proc`` it returns 0 for a live pid (the check degrades to the pid alone).
    """
    try:
        text = Path(f"/proc/{int(pid)}/stat").read_text()
    except FileNotFoundError:
        return None
    except OSError:
        return 0 if pid_alive(pid) else None
    fields = text.rsplit(")", 1)[1].split()  # the command name may contain spaces and parentheses
    if fields[0] == "Z":
        return None  # a zombie has finished
    return int(fields[19])


def same_process_alive(pid: int | None, start_time: int | None) -> bool:
    """True when ``pid`` is alive and is still the process that was started (same start time)."""
    if not pid:
        return False
    if not Path("/proc").is_dir():
        return pid_alive(pid)
    now = process_start_time(pid)
    return now is not None and (start_time is None or now == start_time or now == 0)


def signal_group(pid: int, sig: int) -> bool:
    """Send ``sig`` to the process group led by ``pid`` (each job runs in its own session). True if sent."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if hasattr(os, "killpg"):
            os.killpg(int(pid), sig)
        else:  # Windows: no groups; the job's process only
            os.kill(int(pid), signal.SIGTERM if sig != signal.SIGTERM else sig)
        return True
    return False


def group_alive(pid: int) -> bool:
    """Any process left in the group led by ``pid`` (e.g. extraction workers after their parent died)."""
    if not hasattr(os, "killpg"):
        return pid_alive(pid)
    try:
        os.killpg(int(pid), 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def hold_lock(path: str | Path, blocking: bool = True) -> int | None:
    """Take an exclusive OS lock on ``path`` for this process's lifetime and write our pid into it.

    The kernel drops the lock when the process dies, however it dies, so :func:`workbench.train.runs.lock_holder` tells whether
    a job's process (or the server) still runs even when nobody learnt its pid. The descriptor is not inherited
    by child processes (PEP 446). Returns the descriptor (None without flock); ``blocking=False`` raises
    ``OSError`` when another process holds the lock.
    """
    try:
        import fcntl
    except ImportError:
        return None
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
    except OSError:
        os.close(fd)
        raise
    os.ftruncate(fd, 0)
    os.write(fd, str(os.getpid()).encode())
    return fd


