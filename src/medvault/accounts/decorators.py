"""Page decorators: login (redirect), role checks (403 page, audited)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest
from django.http.response import HttpResponseBase

from medvault.accounts.audit import audit_record
from medvault.accounts.permissions import is_active_user, user_can


def page_login_required(view: Callable[..., HttpResponseBase]) -> Callable[..., HttpResponseBase]:
    """Redirect to the login page unless the user is logged in and approved."""

    @functools.wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        if not is_active_user(request.user):
            return redirect_to_login(request.get_full_path())
        return view(request, *args, **kwargs)

    return wrapper


def role_required(action: str) -> Callable[[Callable[..., HttpResponseBase]], Callable[..., HttpResponseBase]]:
    """Login required, then the role must allow ``action`` (else an audited 403)."""

    def decorate(view: Callable[..., HttpResponseBase]) -> Callable[..., HttpResponseBase]:
        @functools.wraps(view)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
            if not is_active_user(request.user):
                return redirect_to_login(request.get_full_path())
            if not user_can(request.user, action):
                audit_record(user=request.user, action=action, outcome="denied", request=request,
                             detail=f"role {request.user.role} may not {action}: {request.path}")
                raise PermissionDenied(f"Your role does not allow this ({action}).")
            return view(request, *args, **kwargs)

        return wrapper

    return decorate
