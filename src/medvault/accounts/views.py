"""Account pages: login, registration, tokens, user management and the audit log."""

from __future__ import annotations

import csv
from datetime import datetime, time, timedelta
from typing import Any

from django.contrib import messages
from django.contrib.auth import get_user_model
from django.contrib.auth import views as auth_views
from django.contrib.auth.models import Group
from django.core.paginator import Paginator
from django.db import IntegrityError, transaction
from django.db.models import Count, Q
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse_lazy
from django.utils import timezone
from django.views.decorators.http import require_POST

from medvault.accounts import services
from medvault.accounts.audit import audit_record
from medvault.accounts.decorators import page_login_required, role_required
from medvault.accounts.forms import (
    AuditFilterForm,
    GroupCreateForm,
    MedVaultLoginForm,
    RegistrationForm,
    TokenCreateForm,
)
from medvault.accounts.models import AccountStatus, ApiToken, AuditRecord, Role
from medvault.accounts.permissions import is_active_user
from medvault.accounts.tokens import token_create, token_revoke


class LoginView(auth_views.LoginView):
    template_name = "accounts/login.html"
    authentication_form = MedVaultLoginForm
    redirect_authenticated_user = True
    # The form counts the attempt toward the lockout and writes the audit record.


class LogoutView(auth_views.LogoutView):
    template_name = "accounts/logged_out.html"

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if request.user.is_authenticated:
            audit_record(user=request.user, action="logout", request=request)
        return super().post(request, *args, **kwargs)


def register(request: HttpRequest) -> HttpResponse:
    if is_active_user(request.user):
        return redirect("ui:home")
    if request.method == "POST":
        form = RegistrationForm(request.POST)
        if form.is_valid():
            user = form.save(commit=False)
            created = False
            if not form.username_taken():
                try:
                    with transaction.atomic():
                        user.save()
                    created = True
                except IntegrityError:  # registered by someone else a moment ago
                    pass
            # A taken username gets the same page as a new account: registration must not
            # tell anyone which usernames exist. Nothing is created or changed then.
            audit_record(user=None, action="register", outcome="ok" if created else "denied",
                         request=request,
                         detail=f"{user.username} ({user.role})" + ("" if created else ": username taken"))
            return render(request, "accounts/registered.html", {"new_user": user})
    else:
        form = RegistrationForm()
    return render(request, "accounts/register.html", {"form": form})


class PasswordChangeView(auth_views.PasswordChangeView):
    template_name = "accounts/password_change.html"
    success_url = reverse_lazy("accounts:password_change_done")


class PasswordChangeDoneView(auth_views.PasswordChangeDoneView):
    template_name = "accounts/password_change_done.html"


class PasswordResetView(auth_views.PasswordResetView):
    template_name = "accounts/password_reset.html"
    email_template_name = "accounts/password_reset_email.txt"
    subject_template_name = "accounts/password_reset_subject.txt"
    success_url = reverse_lazy("accounts:password_reset_done")


class PasswordResetDoneView(auth_views.PasswordResetDoneView):
    template_name = "accounts/password_reset_done.html"


class PasswordResetConfirmView(auth_views.PasswordResetConfirmView):
    template_name = "accounts/password_reset_confirm.html"
    success_url = reverse_lazy("accounts:password_reset_complete")


class PasswordResetCompleteView(auth_views.PasswordResetCompleteView):
    template_name = "accounts/password_reset_complete.html"


# --- API tokens ----------------------------------------------------------------------------
@page_login_required
def tokens(request: HttpRequest) -> HttpResponse:
    new_key = None
    form = TokenCreateForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        token, new_key = token_create(user=request.user, name=form.cleaned_data["name"])
        audit_record(user=request.user, action="token", request=request, detail=f"token {token.prefix}… created")
        form = TokenCreateForm()
    rows = ApiToken.objects.filter(user_id=request.user.pk or 0)
    return render(request, "accounts/tokens.html", {"form": form, "tokens": rows, "new_key": new_key, "nav": "tokens"})


@require_POST
@page_login_required
def token_revoke_view(request: HttpRequest, token_id: int) -> HttpResponse:
    token = get_object_or_404(ApiToken, pk=token_id, user=request.user)
    token_revoke(token=token)
    audit_record(user=request.user, action="token", request=request, detail=f"token {token.prefix}… revoked")
    messages.success(request, f"Token {token.prefix}… revoked; it no longer works.")
    return redirect("accounts:tokens")


# --- User management -----------------------------------------------------------------------
@role_required("admin")
def users(request: HttpRequest) -> HttpResponse:
    User = get_user_model()
    status = request.GET.get("status", "")
    q = request.GET.get("q", "").strip()
    rows = User.objects.all().prefetch_related("groups").order_by(
        # Pending accounts first: they are what an administrator comes here for.
        "-status", "username"
    )
    if status in AccountStatus.values:
        rows = rows.filter(status=status)
    if q:
        rows = rows.filter(
            Q(username__icontains=q) | Q(full_name__icontains=q) | Q(institution__icontains=q) | Q(email__icontains=q)
        )
    pending_first = sorted(rows, key=lambda u: (u.status != AccountStatus.PENDING, u.username.lower()))
    groups = Group.objects.annotate(
        n_users=Count("user", distinct=True), n_studies=Count("studies", distinct=True)
    ).order_by("name")
    return render(request, "accounts/users.html", {
        "users": pending_first, "groups": groups, "roles": Role.choices, "statuses": AccountStatus.choices,
        "status": status, "q": q, "group_form": GroupCreateForm(), "nav": "users",
        "pending_count": User.objects.filter(status=AccountStatus.PENDING).count(),
    })


@require_POST
@role_required("admin")
def user_action(request: HttpRequest, user_id: int) -> HttpResponse:
    target = get_object_or_404(get_user_model(), pk=user_id)
    action = request.POST.get("action", "")
    if action == "approve":
        services.user_set_status(user=target, status=AccountStatus.APPROVED, by=request.user, request=request)
        messages.success(request, f"{target.username} is approved and can log in now.")
    elif action == "reject":
        services.user_set_status(user=target, status=AccountStatus.REJECTED, by=request.user, request=request)
        messages.success(request, f"{target.username} was rejected.")
    elif action == "deactivate":
        if target == request.user:
            messages.error(request, "You cannot deactivate your own account.")
        else:
            services.user_deactivate(user=target, by=request.user, request=request)
            messages.success(request, f"{target.username} is deactivated and can no longer log in.")
    elif action == "activate":
        services.user_activate(user=target, by=request.user, request=request)
        messages.success(request, f"{target.username} is active again.")
    elif action == "role":
        role = request.POST.get("role", "")
        if role in Role.values and not (target == request.user and role != Role.ADMINISTRATOR):
            services.user_set_role(user=target, role=role, by=request.user, request=request)
            messages.success(request, f"{target.username} is now {target.get_role_display()}.")
        else:
            messages.error(request, "That role change is not possible.")
    elif action in ("add_group", "remove_group"):
        group = Group.objects.filter(pk=request.POST.get("group") or 0).first()
        if group is None:
            messages.error(request, "Choose a group.")
        else:
            services.group_membership_set(user=target, group=group, member=action == "add_group",
                                          by=request.user, request=request)
            messages.success(
                request, f"{target.username} {'joined' if action == 'add_group' else 'left'} {group.name}."
            )
    else:
        messages.error(request, "Unknown action.")
    next_url = request.POST.get("next", "")
    return redirect(next_url if next_url.startswith("/accounts/users") else "accounts:users")


@require_POST
@role_required("admin")
def group_create(request: HttpRequest) -> HttpResponse:
    form = GroupCreateForm(request.POST)
    if form.is_valid():
        group, created = Group.objects.get_or_create(name=form.cleaned_data["name"].strip())
        audit_record(user=request.user, action="user-admin", request=request, detail=f"group {group.name} created")
        messages.success(request, f"Group {group.name} {'created' if created else 'already exists'}.")
    else:
        messages.error(request, "Give the group a name.")
    return redirect("accounts:users")


# --- Audit log -----------------------------------------------------------------------------
def _audit_rows(form: AuditFilterForm) -> Any:
    rows = AuditRecord.objects.all()
    if not form.is_valid():
        return rows
    data = form.cleaned_data
    if data["user"]:
        rows = rows.filter(username__iexact=data["user"].strip())
    if data["patient"]:
        rows = rows.filter(patient_id=data["patient"].strip())
    if data["action"]:
        rows = rows.filter(action=data["action"].strip())
    if data["outcome"]:
        rows = rows.filter(outcome=data["outcome"])
    tz = timezone.get_current_timezone()
    if data["date_from"]:
        rows = rows.filter(created_at__gte=datetime.combine(data["date_from"], time.min, tzinfo=tz))
    if data["date_to"]:
        rows = rows.filter(created_at__lt=datetime.combine(data["date_to"] + timedelta(days=1), time.min, tzinfo=tz))
    return rows


@role_required("admin")
def audit(request: HttpRequest) -> HttpResponse:
    form = AuditFilterForm(request.GET or None)
    rows = _audit_rows(form)
    page = Paginator(rows, 50).get_page(request.GET.get("page"))
    actions = AuditRecord.objects.order_by().values_list("action", flat=True).distinct()
    return render(
        request, "accounts/audit.html", {"form": form, "page": page, "actions": sorted(set(actions)), "nav": "audit"}
    )


_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: Any) -> str:
    """A cell a spreadsheet will not run: text starting with ``= + - @`` (or a tab or carriage
    return before one) gets a leading apostrophe (OWASP "CSV injection"). Audit fields come
    from DICOM headers and requests, so a PatientID of ``=HYPERLINK(...)`` is possible."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(_FORMULA_STARTS) else text


class _Echo:
    def write(self, value: str) -> str:
        return value


@role_required("admin")
def audit_csv(request: HttpRequest) -> StreamingHttpResponse:
    form = AuditFilterForm(request.GET or None)
    rows = _audit_rows(form)
    audit_record(user=request.user, action="export", request=request,
                 detail=f"audit log CSV: {request.GET.urlencode()}")
    writer = csv.writer(_Echo())
    header = [
        "time_utc",
        "user",
        "action",
        "outcome",
        "remote_addr",
        "patient_id",
        "study_uid",
        "series_uid",
        "sop_uid",
        "detail",
    ]

    def lines() -> Any:
        yield writer.writerow(header)
        for r in rows.iterator(chunk_size=2000):
            yield writer.writerow(
                [
                    csv_cell(value)
                    for value in (
                        r.created_at.isoformat(),
                        r.username,
                        r.action,
                        r.outcome,
                        r.remote_addr,
                        r.patient_id,
                        r.study_uid,
                        r.series_uid,
                        r.sop_uid,
                        r.detail,
                    )
                ]
            )

    response = StreamingHttpResponse(lines(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="medvault-audit-{timezone.now():%Y%m%d-%H%M}.csv"'
    return response
