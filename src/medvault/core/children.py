"""Child processes that die with their parent (``medvault serve``, ``medvault worker``).

A parent stopped with SIGTERM or Ctrl-C stops its children itself. One killed with
``kill -9`` (or by the OOM killer) cannot, and its children ran on as orphans: workers
claiming jobs nobody supervises, a gunicorn still holding the port. On Linux each child asks
the kernel (``prctl(PR_SET_PDEATHSIG)``, between fork and exec) for SIGTERM when its parent
dies, so it stops as it would on Ctrl-C: a worker finishes the job in hand, gunicorn shuts its
workers down. Elsewhere ``parent_watch`` lets a worker poll for the same event.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys
import threading
from collections.abc import Callable

_PR_SET_PDEATHSIG = 1


def _prctl() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    except OSError:
        return None
    return getattr(libc, "prctl", None)


def die_with_parent(sig: int = signal.SIGTERM) -> Callable[[], None] | None:
    """A ``preexec_fn`` for ``subprocess.Popen``: the child gets ``sig`` when this process
    dies. None where the platform has no parent-death signal (then use ``parent_watch``)."""
    prctl = _prctl()  # looked up here, in the parent: nothing is loaded after the fork
    if prctl is None:
        return None
    parent = os.getpid()

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
        if os.getppid() != parent:  # the parent died before the request took effect
            os.kill(os.getpid(), sig)

    return preexec


def parent_watch(
    stop: threading.Event, parent_pid: int, every_seconds: float = 1.0
) -> threading.Thread:
    """Set ``stop`` once ``parent_pid`` is no longer this process's parent (a daemon thread)."""

    def watch() -> None:
        while not stop.wait(every_seconds):
            if os.getppid() != parent_pid:
                stop.set()
                return

    thread = threading.Thread(target=watch, name="parent-watch", daemon=True)
    thread.start()
    return thread
