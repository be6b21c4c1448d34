"""``medvault worker [--once] [--concurrency N]``: run analysis jobs, then deferred compression
tasks, from the database queue (``medvault.archive.jobs``)."""

from __future__ import annotations

import os
import signal
import threading
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from medvault.analysis.backends import models_available
from medvault.analysis.worker import PARENT_PID_ENV, install_stop_handlers, worker_pool, worker_run
from medvault.core.children import parent_watch


class Command(BaseCommand):
    help = (
        "Run analysis jobs (and deferred compression when none waits): one process per CPU core "
        "by default. SIGTERM (or Ctrl-C) stops cleanly after the job in hand. --once exits when no "
        "job is left to claim."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument(
            "--once", action="store_true", help="exit when the queue has no claimable job"
        )
        parser.add_argument(
            "--concurrency",
            type=int,
            default=0,
            help="worker processes (default: one per CPU core)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        concurrency = options["concurrency"] or (os.cpu_count() or 1)
        if concurrency < 1:
            raise CommandError("--concurrency must be at least 1")
        if concurrency > 1:
            self.stdout.write(
                f"medvault worker: {concurrency} processes; models installed: "
                f"{', '.join(models_available()) or 'none'}"
            )
            status = worker_pool(concurrency=concurrency, once=options["once"])
            if status:
                raise CommandError(f"a worker process exited with status {status}")
            return
        stop = threading.Event()
        previous = install_stop_handlers(stop)
        parent = os.environ.get(PARENT_PID_ENV, "")
        if parent.isdigit():
            # A pool's child: stop when the pool is gone, even where no signal says so.
            parent_watch(stop, int(parent))
        try:
            stats = worker_run(stop=stop, once=options["once"])
        finally:
            # Called in-process (call_command), leave the caller's handlers as they were.
            for signum, handler in previous.items():
                signal.signal(signum, handler)
        if options["once"] or options["verbosity"] > 1:
            self.stdout.write(
                f"medvault worker {os.getpid()}: {stats.done} done, {stats.failed} failed, "
                f"{stats.retried} to retry, {stats.duplicates} already stored"
            )
