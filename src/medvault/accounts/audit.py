"""The append-only audit trail: one call, ``audit_record``, used by every app.

Every view, download, export, upload, analysis, search, share and deletion of patient data
writes a record, including denials. There is no code path that edits or deletes a record.
"""

from __future__ import annotations

from typing import Any

from medvault.accounts import conf
from medvault.accounts.models import AuditRecord

# Actions in use; free text is allowed so other apps can add their own.
ACTIONS = (
    "view", "download", "export", "upload", "analyse", "search", "delete", "share",
    "share-use", "share-revoke", "login", "logout", "user-admin", "token",
)
OUTCOMES = ("ok", "denied", "error")


def client_address(request: Any) -> str:
    """The client's address: the peer, or behind a trusted proxy (``MEDVAULT_TRUSTED_PROXIES``,
    empty by default) the last X-Forwarded-For hop that is not a proxy.

    Behind nginx every request would otherwise come from 127.0.0.1, and the per-address
    login lockout would lock everybody out at once. Without a configured proxy the header is
    ignored: a client that could choose its address could dodge the lockout and the audit.
    """
    if request is None:
        return ""
    remote = str(request.META.get("REMOTE_ADDR", ""))
    trusted = conf.trusted_proxies()
    if remote in trusted:
        hops = [h.strip() for h in str(request.META.get("HTTP_X_FORWARDED_FOR", "")).split(",")]
        for hop in reversed([h for h in hops if h]):
            if hop not in trusted:
                return hop[:64]
    return remote[:64]


def audit_record(
    *,
    user: Any,
    action: str,
    outcome: str = "ok",
    request: Any = None,
    remote_addr: str = "",
    patient_id: str = "",
    study_uid: str = "",
    series_uid: str = "",
    sop_uid: str = "",
    detail: str = "",
) -> None:
    """Append one audit record.

    ``user`` may be None or an anonymous user (e.g. a denied unauthenticated request).
    ``request`` fills in the address when ``remote_addr`` is not given.
    """
    if outcome not in OUTCOMES:
        raise ValueError(f"unknown audit outcome {outcome!r}")
    real_user = user if (user is not None and getattr(user, "is_authenticated", False)) else None
    AuditRecord.objects.create(
        user=real_user,
        username=(real_user.get_username() if real_user is not None else "")[:150],
        action=action[:32],
        outcome=outcome,
        remote_addr=(remote_addr or client_address(request))[:64],
        patient_id=(patient_id or "")[:64],
        study_uid=(study_uid or "")[:64],
        series_uid=(series_uid or "")[:64],
        sop_uid=(sop_uid or "")[:64],
        detail=detail or "",
    )
