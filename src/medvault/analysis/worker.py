"""The analysis worker loop (``medvault worker``), kept out of the command so tests call it.

One process runs one job at a time, from every queue it serves (``medvault.archive.jobs``):
analysis jobs first; when none is waiting, deferred compression tasks
(``medvault.archive.compression``). ``worker_pool`` starts N such processes and forwards
SIGTERM/SIGINT to them. On SIGTERM a worker finishes the job in hand (inference takes well
under a second), then exits; a job it had claimed but not started goes back to the queue.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from django.db import DatabaseError, close_old_connections, connections

from medvault.analysis import services
from medvault.analysis.backends import AnalysisBackend, analysis_backend, models_available
from medvault.analysis.conf import worker_poll_seconds
from medvault.archive.compression import compression_batch
from medvault.archive.jobs import Outcome, worker_identity
from medvault.core.children import die_with_parent

# Set by worker_pool for its children: the pid whose death stops them (see parent_watch).
PARENT_PID_ENV = "MEDVAULT_WORKER_PARENT_PID"

log = logging.getLogger("medvault.worker")


@dataclass
class WorkerStats:
    done: int = 0
    failed: int = 0
    retried: int = 0
    duplicates: int = 0
    compressed: int = 0  # deferred-compression tasks run (see medvault.archive.compression)
    outcomes: list[services.JobOutcome] = field(default_factory=list)


_ONCE_DB_RETRIES = 3


def worker_run(
    *,
    stop: threading.Event,
    once: bool = False,
    backend: AnalysisBackend | None = None,
    worker_id: str | None = None,
    on_outcome: Callable[[services.JobOutcome], None] | None = None,
) -> WorkerStats:
    """Claim and run jobs until ``stop`` is set (or, with ``once``, until none is claimable).

    A database outage is waited out: the loop backs off and reconnects.
    """
    wid = worker_id or worker_identity()
    engine = backend or analysis_backend()
    stats = WorkerStats()
    backoff = worker_poll_seconds()
    db_errors = 0
    _preload(engine)
    while not stop.is_set():
        try:
            _refresh_connections()
            job = services.job_claim(worker_id=wid)
            if job is None:
                # Idle: compress an instance that ingest kept as received (deferred
                # compression); analysis jobs always go first.
                if outcomes := compression_batch(worker_id=wid):
                    stats.compressed += len(outcomes)
                    backoff, db_errors = worker_poll_seconds(), 0
                    continue
                if once:
                    break
                stop.wait(worker_poll_seconds())
                continue
            if stop.is_set():
                services.job_release(job=job)
                break
            outcome = services.job_run(job=job, worker_id=wid, backend=engine)
            backoff, db_errors = worker_poll_seconds(), 0
        except DatabaseError as exc:
            # The database went away (restart, failover): drop the connection and retry.
            # A one-shot run (--once) gives up after a few tries instead of waiting forever.
            db_errors += 1
            if once and db_errors >= _ONCE_DB_RETRIES:
                raise
            log.warning("worker %s: database error (%s); retrying in %.1f s", wid, exc, backoff)
            for conn in connections.all(initialized_only=True):
                if conn.in_atomic_block:
                    continue
                try:
                    conn.close()
                except DatabaseError:
                    pass  # already broken; the next query opens a fresh connection
            stop.wait(backoff)
            backoff = min(backoff * 2, 10.0)
            continue
        stats.outcomes.append(outcome)
        if outcome.status is Outcome.DONE:
            stats.done += 1
        elif outcome.status is Outcome.FAILED:
            stats.failed += 1
        elif outcome.status is Outcome.RETRY:
            stats.retried += 1
        else:  # DUPLICATE, or GONE (another worker took the job over): nothing stored here
            stats.duplicates += 1
        log.info("worker %s: job %s %s %s", wid, outcome.job_id, outcome.status, outcome.error)
        if on_outcome is not None:
            on_outcome(outcome)
    return stats


def _refresh_connections() -> None:
    """Drop stale or broken connections between jobs, as Django does between requests.

    Not inside a transaction (a caller's, e.g. a test's): closing there would break it.
    """
    if not any(conn.in_atomic_block for conn in connections.all(initialized_only=True)):
        close_old_connections()


def _preload(engine: AnalysisBackend) -> None:
    """Load the installed models up front, so the first job does not pay for it."""
    load = getattr(engine, "model", None)
    if load is None:
        return
    for name in models_available():
        try:
            load(name)
        except Exception as exc:  # a broken model fails its jobs later, with the error kept
            log.warning("worker: could not load model %s: %s", name, exc)


def install_stop_handlers(stop: threading.Event) -> dict[int, Any]:
    """SIGTERM and SIGINT set ``stop``; returns the handlers they replaced."""

    def handler(signum: int, frame: Any) -> None:
        log.info("worker %s: signal %s, stopping after the current job", os.getpid(), signum)
        stop.set()

    previous: dict[int, Any] = {}
    for signum in (signal.SIGTERM, signal.SIGINT):
        previous[signum] = signal.signal(signum, handler)
    return previous


def worker_pool(*, concurrency: int, once: bool, extra_args: list[str] | None = None) -> int:
    """Run ``concurrency`` single worker processes; restart any that dies unexpectedly.

    Returns the exit status (0 unless a child failed with ``once``).
    """
    command = [sys.executable, "-m", "medvault.cli", "worker", "--concurrency", "1"]
    if once:
        command.append("--once")
    command.extend(extra_args or [])
    stop = threading.Event()
    install_stop_handlers(stop)
    children: dict[int, subprocess.Popen[bytes]] = {}

    # A pool killed with SIGKILL cannot forward anything: each child gets SIGTERM from the
    # kernel (Linux) or notices its parent is gone (parent_watch), and stops as on Ctrl-C.
    preexec = die_with_parent()
    env = {**os.environ, PARENT_PID_ENV: str(os.getpid())}

    def spawn(slot: int) -> None:
        children[slot] = subprocess.Popen(command, preexec_fn=preexec, env=env)

    for slot in range(concurrency):
        spawn(slot)
    status = 0
    forwarded = False
    while children:
        if stop.is_set() and not forwarded:
            for child in children.values():
                if child.poll() is None:
                    child.send_signal(signal.SIGTERM)
            forwarded = True
        for slot, child in list(children.items()):
            code = child.poll()
            if code is None:
                continue
            del children[slot]
            # A child still starting up when we forwarded SIGTERM dies of it: no job was
            # in hand yet (it installs its handler before it claims anything).
            stopped_early = stop.is_set() and code in (-signal.SIGTERM, -signal.SIGINT)
            if code != 0 and not stopped_early:
                status = code
            if not once and not stop.is_set():
                log.warning("worker process %s exited with %s; starting another", child.pid, code)
                time.sleep(1.0)
                spawn(slot)
        if stop.is_set():
            time.sleep(0.2)
        else:
            stop.wait(0.2)
    return status
