"""Template helpers: role checks and DICOM display formatting."""

from __future__ import annotations

from typing import Any

from django import template

from medvault.accounts import permissions

register = template.Library()


@register.simple_tag(takes_context=True)
def can(context: dict[str, Any], action: str) -> bool:
    """``{% can 'upload' as may_upload %}``: whether the current user's role allows it."""
    request = context.get("request")
    user = getattr(request, "user", None) or context.get("user")
    return permissions.user_can(user, action)


@register.filter
def pn(value: Any) -> str:
    """DICOM person name ``Doe^Jane`` -> ``Doe, Jane``."""
    parts = [p for p in str(value or "").split("^") if p]
    if not parts:
        return ""
    if len(parts) == 1:
        return parts[0]
    return f"{parts[0]}, {' '.join(parts[1:])}"


@register.filter
def filesize(value: Any) -> str:
    try:
        size = float(value)
    except (TypeError, ValueError):
        return ""
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if size < 1024 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return ""


@register.filter
def percent(value: Any) -> str:
    try:
        return f"{float(value) * 100:.0f}%"
    except (TypeError, ValueError):
        return ""


@register.simple_tag(takes_context=True)
def query_with(context: dict[str, Any], **changes: Any) -> str:
    """The current query string with some parameters replaced (for sort and page links)."""
    request = context["request"]
    params = request.GET.copy()
    for key, value in changes.items():
        if value in (None, ""):
            params.pop(key, None)
        else:
            params[key] = value
    encoded = params.urlencode()
    return f"?{encoded}" if encoded else "?"


@register.filter
def ohif_url(study_uid: str) -> str:
    """``/ohif/viewer?StudyInstanceUIDs=<uid>``, or "" when the OHIF bundle is not installed."""
    from urllib.parse import urlencode

    from medvault.ui.ohif import ohif_available

    if not ohif_available():
        return ""
    return "/ohif/viewer?" + urlencode({"StudyInstanceUIDs": study_uid})
