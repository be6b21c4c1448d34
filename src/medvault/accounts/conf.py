"""Account and audit settings, each typed and with the default of ``web/settings.py``.

Read at call time, so ``override_settings`` in tests and a changed environment both apply.
"""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings


def login_max_failures() -> int:
    """Failed logins (per account or per address) before the lockout starts."""
    return int(getattr(settings, "MEDVAULT_LOGIN_MAX_FAILURES", 5))


def login_lockout() -> timedelta:
    return timedelta(seconds=int(getattr(settings, "MEDVAULT_LOGIN_LOCKOUT_SECONDS", 15 * 60)))


def trusted_proxies() -> frozenset[str]:
    """Addresses whose X-Forwarded-For is believed (the reverse proxy in front of us)."""
    return frozenset(str(address) for address in getattr(settings, "MEDVAULT_TRUSTED_PROXIES", []))


def deid_retain_dates() -> bool:
    """PS3.15's Retain Longitudinal Temporal Information With Full Dates Option."""
    return bool(getattr(settings, "MEDVAULT_DEID_RETAIN_DATES", False))


def deid_uid_key() -> bytes:
    """The key of the UID pseudonyms; SECRET_KEY when none is set."""
    return str(getattr(settings, "MEDVAULT_DEID_UID_KEY", "") or settings.SECRET_KEY).encode()
