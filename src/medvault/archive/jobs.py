"""One lease-based job queue over database rows, for every kind of background work.

Analysis jobs (``analysis``), deferred compression (``archive.compression``) and storage
commitment reports (``dimse.commitment``) are rows of their own models; each kind describes
its columns once in a :class:`LeaseQueue`, and this module does the claiming, the leases, the
retries and the terminal failure for all of them.

Why not Django's task framework (``django-tasks`` with ``django-tasks-db``)? Measured with
0.12.0/0.13.0 (``docs/background-work.md``): a task whose worker is killed with ``kill -9``
stays ``RUNNING`` forever (no lease, nothing reclaims it), and a failed task is ``FAILED`` at
once (no retries). Both guarantees are what these queues exist for.

How a claim works: one conditional ``UPDATE`` per candidate row::

    UPDATE t SET state='running', due=now+lease, worker_id=?, attempts=attempts+1
     WHERE id=? AND state IN ('queued','running') AND (due IS NULL OR due <= now)
       AND attempts < max

It matches at most one worker on SQLite, PostgreSQL and MariaDB alike (no ``SELECT ... FOR
UPDATE SKIP LOCKED``, which SQLite lacks). One column, ``due``, is both the lease of a running
row and the backoff of a queued one: a worker that dies leaves its row with a lease that runs
out, and the next claim takes it over. ``attempts`` counts claims, so a job whose worker dies
every time is still bounded; ``(pk, worker_id, attempts)`` identifies one attempt, and every
write an attempt makes afterwards (:meth:`LeaseQueue.owned`) matches nothing once another
worker has claimed the row again.

Exactly one result is the job kind's part: a unique column (``AnalysisResult.job``) or a
conditional swap (compression) that only the owning attempt can make.
"""

from __future__ import annotations

import enum
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Generic, TypeVar

from django.db import models, transaction
from django.db.models import F, Q, QuerySet
from django.utils import timezone

from medvault.archive import conf

M = TypeVar("M", bound=models.Model)

RETRY_CAP_SECONDS = 3600.0


class JobState(models.TextChoices):
    """Where a job is: waiting (maybe backing off), claimed under a lease, or finished."""

    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    DONE = "done", "Done"
    FAILED = "failed", "Failed"


class Outcome(enum.StrEnum):
    """What one attempt came to, as a worker reports it."""

    DONE = "done"  # the job's result is stored by this attempt
    DUPLICATE = "duplicate"  # another attempt of the same job stored it first
    RETRY = "retry"  # this attempt failed; the job is queued again after a backoff
    FAILED = "failed"  # failed for good (permanent error, or out of attempts)
    GONE = "gone"  # the job went away or another worker owns it now: nothing written



def doubling_backoff(base: Callable[[], float]) -> Callable[[int], float]:
    """``attempts -> seconds``: ``base()``, doubling with every attempt made, capped."""

    def delay(attempts: int) -> float:
        return float(min(base() * 2 ** max(attempts - 1, 0), RETRY_CAP_SECONDS))

    return delay


def worker_identity(suffix: str = "") -> str:
    """``host:pid`` (and an optional suffix): who holds a lease, for people reading rows."""
    return f"{socket.gethostname()}:{os.getpid()}{suffix}"[:128]


@dataclass(frozen=True)
class LeaseQueue(Generic[M]):
    """A job kind's rows as a queue. The defaults name ``AnalysisJob``'s columns.

    ``state`` holds ``queued``/``running``/``done``/``failed`` (or the kind's own values, see
    ``queued`` ... ``failed``; a kind without a running state passes its queued value).
    ``due`` is the time before which nobody may claim the row: the lease while it runs, the
    backoff while it waits, NULL for now. ``worker`` may be None for a kind that does not
    record who holds the lease.
    """

    model: type[M]
    lease: Callable[[], float] = conf.job_lease_seconds
    attempts_max: Callable[[], int] = conf.job_max_attempts
    backoff: Callable[[int], float] = field(default_factory=lambda: doubling_backoff(conf.job_retry_seconds))
    state: str = "status"
    due: str = "lease_until"
    worker: str | None = "worker_id"
    error: str = "error"
    attempts: str = "attempts"
    error_max: int = 4000
    queued: str = JobState.QUEUED
    running: str = JobState.RUNNING
    done: str = JobState.DONE
    failed: str = JobState.FAILED
    order: tuple[str, ...] = ("id",)
    # Columns set when a claim succeeds / a job finishes (``started_at``, ``finished_at``).
    claim_time: str | None = None
    finish_time: str | None = None

    # --- reads -----------------------------------------------------------------------------
    @property
    def active(self) -> list[str]:
        return [self.queued] if self.running == self.queued else [self.queued, self.running]

    def claimable(self, now: datetime) -> Q:
        due_now = Q(**{f"{self.due}__isnull": True}) | Q(**{f"{self.due}__lte": now})
        limit = Q(**{f"{self.attempts}__lt": self.attempts_max()})
        return Q(**{f"{self.state}__in": self.active}) & due_now & limit

    def pending(self) -> QuerySet[M]:
        """Rows still to run (including those backing off or leased)."""
        return self.model._default_manager.filter(
            **{f"{self.state}__in": self.active, f"{self.attempts}__lt": self.attempts_max()}
        )

    def owned(self, job: M) -> QuerySet[M]:
        """``job``'s row while the attempt that claimed it still owns it.

        Every claim adds one to ``attempts``: an attempt whose lease ran out and whose job
        another worker claimed matches nothing here, so it can no longer write.
        """
        rows = self.model._default_manager.filter(
            pk=job.pk, **{self.attempts: getattr(job, self.attempts), f"{self.state}__in": self.active}
        )
        if self.worker is not None:
            rows = rows.filter(**{self.worker: getattr(job, self.worker)})
        return rows

    # --- writes ----------------------------------------------------------------------------
    def fail_exhausted(self) -> int:
        """Fail the jobs whose lease ran out after their last allowed attempt."""
        now = timezone.now()
        limit = self.attempts_max()
        # A NULL ``due`` too: a row queued when the limit was higher (a lowered setting).
        not_held = Q(**{f"{self.due}__isnull": True}) | Q(**{f"{self.due}__lt": now})
        exhausted = self.model._default_manager.filter(
            not_held, **{f"{self.state}__in": self.active, f"{self.attempts}__gte": limit}
        )
        # Look before writing: idle workers poll often, and on SQLite every UPDATE (even one
        # that matches nothing) takes the database's write lock.
        if not exhausted.exists():
            return 0
        return exhausted.update(**self._finished(
            self.failed, now, f"gave up after {limit} attempts (the worker stopped or timed out)"
        ))

    def claim(
        self,
        *,
        worker_id: str,
        lease: float | None = None,
        batch: int = 8,
        where: Q | None = None,
        pk: Any = None,
    ) -> M | None:
        """Claim the oldest claimable row (or row ``pk``) for ``worker_id``; None if none is."""
        self.fail_exhausted()
        now = timezone.now()
        claimable = self.claimable(now) & (where or Q())
        if pk is not None:
            candidates = [pk]
        else:
            candidates = list(
                self.model._default_manager.filter(claimable)
                .order_by(*self.order)
                .values_list("pk", flat=True)[:batch]
            )
        changes = self._claim_changes(now, worker_id, lease)
        for candidate in candidates:
            if self.model._default_manager.filter(claimable, pk=candidate).update(**changes) == 1:
                return self.model._default_manager.get(pk=candidate)
        return None

    def _claim_changes(self, now: datetime, worker_id: str, lease: float | None) -> dict[str, Any]:
        """The columns one claim sets: running, leased until now + lease, one more attempt."""
        seconds = self.lease() if lease is None else lease
        changes: dict[str, Any] = {
            self.state: self.running,
            self.due: now + timedelta(seconds=seconds),
            self.attempts: F(self.attempts) + 1,
        }
        if self.worker is not None:
            changes[self.worker] = worker_id[:128]
        if self.claim_time is not None:
            changes[self.claim_time] = now
        return changes

    def claim_many(self, *, worker_id: str, count: int, lease: float | None = None) -> list[M]:
        """Claim up to ``count`` of the oldest claimable rows for ``worker_id``, in one
        transaction (one commit instead of one per row); [] when none is claimable.

        Each row is taken by the same conditional ``UPDATE`` as ``claim``, so a row another
        worker claimed meanwhile is skipped, never claimed twice.
        """
        if count <= 1:
            job = self.claim(worker_id=worker_id, lease=lease)
            return [] if job is None else [job]
        self.fail_exhausted()
        now = timezone.now()
        claimable = self.claimable(now)
        manager = self.model._default_manager
        candidates = list(
            manager.filter(claimable).order_by(*self.order).values_list("pk", flat=True)[: 2 * count]
        )
        if not candidates:
            return []
        changes = self._claim_changes(now, worker_id, lease)
        taken: list[Any] = []
        with transaction.atomic():
            for candidate in candidates:
                if manager.filter(claimable, pk=candidate).update(**changes) == 1:
                    taken.append(candidate)
                    if len(taken) == count:
                        break
        return list(manager.filter(pk__in=taken).order_by(*self.order))

    def complete(self, job: M, **columns: Any) -> bool:
        """Mark ``job`` done, if this attempt still owns it."""
        return bool(self.owned(job).update(**self._finished(self.done, timezone.now(), ""), **columns))

    def mark_done(self, pk: Any, **columns: Any) -> int:
        """Mark row ``pk`` done whoever owns it (its result is stored, by whichever attempt)."""
        return self.model._default_manager.filter(pk=pk).exclude(**{self.state: self.done}).update(
            **self._finished(self.done, timezone.now(), ""), **columns
        )

    def retry(self, job: M, *, error: str, permanent: bool = False, **columns: Any) -> Outcome:
        """Record a failed attempt: queued again after the backoff, or failed for good when
        ``permanent`` or out of attempts. GONE when this attempt no longer owns the job."""
        now = timezone.now()
        attempts = int(getattr(job, self.attempts))
        if permanent or attempts >= self.attempts_max():
            changes = self._finished(self.failed, now, error)
            outcome = Outcome.FAILED
        else:
            changes = {
                self.state: self.queued,
                self.due: now + timedelta(seconds=self.backoff(attempts)),
                self.error: error[: self.error_max],
            }
            outcome = Outcome.RETRY
        if not self.owned(job).update(**changes, **columns):
            return Outcome.GONE
        return outcome

    def release(self, job: M) -> bool:
        """Give a claimed job back unstarted (a worker stopping): the claim is not counted."""
        changes: dict[str, Any] = {self.state: self.queued, self.due: None, self.attempts: F(self.attempts) - 1}
        if self.worker is not None:
            changes[self.worker] = ""
        return bool(self.owned(job).update(**changes))

    def _finished(self, state: str, now: datetime, error: str) -> dict[str, Any]:
        changes: dict[str, Any] = {self.state: state, self.due: None, self.error: error[: self.error_max]}
        if self.finish_time is not None:
            changes[self.finish_time] = now
        return changes

