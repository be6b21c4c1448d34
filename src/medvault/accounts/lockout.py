"""Login lockout: 5 failures for one account or one address lock it for 15 minutes.

Counted in the database so that all app servers share the count.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db.models import Max, Q
from django.utils import timezone

from medvault.accounts import conf
from medvault.accounts.models import LoginAttempt


def _limits() -> tuple[int, timedelta]:
    return conf.login_max_failures(), conf.login_lockout()


def _failures(q: Q, since: datetime) -> int:
    last_ok = LoginAttempt.objects.filter(q, succeeded=True, created_at__gte=since).aggregate(
        m=Max("created_at")
    )["m"]
    start = max(since, last_ok) if last_ok else since
    return LoginAttempt.objects.filter(q, succeeded=False, created_at__gte=start).count()


def login_locked(*, username: str, remote_addr: str) -> bool:
    """True when the account or the address has too many recent failures."""
    max_failures, window = _limits()
    since = timezone.now() - window
    if username and _failures(Q(username__iexact=username), since) >= max_failures:
        return True
    if remote_addr and _failures(Q(remote_addr=remote_addr), since) >= max_failures:
        return True
    return False


def login_attempt_record(*, username: str, remote_addr: str, succeeded: bool) -> None:
    LoginAttempt.objects.create(
        username=username[:150], remote_addr=remote_addr[:64], succeeded=succeeded
    )
    # Attempts older than the window (and a day) no longer count: keep the table small.
    # (Logins are also in the audit trail, which is never pruned.)
    _, window = _limits()
    LoginAttempt.objects.filter(created_at__lt=timezone.now() - max(window, timedelta(days=1))).delete()
