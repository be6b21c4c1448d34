"""Enumerate every URL pattern of the project (all apps) and build a concrete path for each."""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from typing import Any

from django.urls import URLPattern, URLResolver, get_resolver, resolve
from django.urls.exceptions import Resolver404
from django.utils.regex_helper import normalize

# url names (namespace:name) anyone may open.
PUBLIC = {
    "ui:home",
    "accounts:login", "accounts:logout", "accounts:register",
    "accounts:password_reset", "accounts:password_reset_done",
    "accounts:password_reset_confirm", "accounts:password_reset_complete",
    "admin:login", "admin:logout", "admin:password_reset", "admin:password_reset_done",
    "admin:password_reset_confirm", "admin:password_reset_complete", "admin:view_on_site",
    "ops:healthz",
}
API_PREFIXES = ("/api/", "/dicomweb/")
GENERIC = ["1", "1.2.3", "accounts", "auth", "x"]


@dataclass
class Endpoint:
    name: str
    regex: str
    params: list[str]
    pattern: URLPattern


def _walk(patterns, prefix="", namespace=""):
    for p in patterns:
        regex = p.pattern.regex.pattern
        regex = regex[1:] if regex.startswith("^") else regex
        if isinstance(p, URLResolver):
            ns = namespace
            if p.namespace:
                ns = f"{namespace}:{p.namespace}" if namespace else p.namespace
            yield from _walk(p.url_patterns, prefix + regex.rstrip("$").removesuffix("\\Z"), ns)
        else:
            full = prefix + regex
            name = f"{namespace}:{p.name}" if namespace and p.name else (p.name or "")
            yield Endpoint(name, full, [], p)


def _build(endpoint: Endpoint, values: dict[str, str]) -> str | None:
    """A concrete path that resolves back to this pattern, or None."""
    for fmt, params in normalize("^" + endpoint.regex.replace("\\Z", "$")):
        choices = [[values[p]] if p in values else GENERIC for p in params]
        for combo in itertools.product(*choices):
            try:
                path = "/" + fmt % dict(zip(params, combo, strict=True))
            except (TypeError, ValueError, KeyError):
                continue
            try:
                match = resolve(path)
            except Resolver404:
                continue
            if match.func == endpoint.pattern.callback or (
                endpoint.pattern.name and match.url_name == endpoint.pattern.name
            ):
                return path
    return None


def endpoints() -> list[Endpoint]:
    return list(_walk(get_resolver().url_patterns))




UID_PARAMS = re.compile(r"study|series|instance|sop|other|uid", re.I)


def uid_values(endpoint: Endpoint, study: Any) -> dict[str, str]:
    """Values for the UID parameters of ``endpoint`` that point into ``study``."""
    series = study.series.first()
    instance = series.instances.first() if series else None
    values = {}
    for p in re.findall(r"\?P<(\w+)>", endpoint.regex):
        low = p.lower()
        if "study" in low:
            values[p] = study.study_instance_uid
        elif "series" in low and series:
            values[p] = series.series_instance_uid
        elif UID_PARAMS.search(low) and "uidb64" not in low and instance:
            values[p] = instance.sop_instance_uid
        elif "frame" in low:
            values[p] = "1"
    return values


def all_paths(study: Any) -> list[str]:
    """One concrete path per URL pattern (UIDs pointing at ``study``)."""
    paths = []
    for endpoint in endpoints():
        path = _build(endpoint, uid_values(endpoint, study))
        if path is not None:
            paths.append(path)
    return paths
