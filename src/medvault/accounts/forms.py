"""Forms for login, registration, tokens, user management, shares and the audit filter."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth import authenticate, get_user_model
from django.contrib.auth.forms import AuthenticationForm, UserCreationForm, UsernameField
from django.contrib.auth.models import Group

from medvault.accounts import conf
from medvault.accounts.audit import audit_record, client_address
from medvault.accounts.lockout import login_attempt_record, login_locked
from medvault.accounts.models import AccountStatus, Role, User


def locked_message() -> str:
    minutes = max(1, round(conf.login_lockout().total_seconds() / 60))
    return (
        "Too many failed login attempts for this account or from this address. "
        f"For your security, logging in is blocked for {minutes} minutes. Try again later."
    )
STATUS_MESSAGES: dict[str, str] = {
    AccountStatus.PENDING: (
        "Your account is waiting for approval by an administrator. "
        "You can log in as soon as it has been approved."
    ),
    AccountStatus.REJECTED: (
        "Your registration was not approved, so this account cannot log in. "
        "Contact your MedVault administrator if you think this is a mistake."
    ),
}
INACTIVE_MESSAGE = "This account has been deactivated. Contact your MedVault administrator."


class MedVaultLoginForm(AuthenticationForm):
    """Login with lockout, and a plain-words reason when an account cannot log in.

    Every door that logs a user in (the site and the Django admin) uses this form, so each
    counts toward, and is refused by, the same lockout, and each attempt is audited here.
    """

    door = "site"

    error_messages = {
        **AuthenticationForm.error_messages,
        "invalid_login": "The username or password is not correct. Both are case-sensitive.",
    }

    def clean(self) -> dict[str, Any]:
        username = (self.cleaned_data.get("username") or "").strip()
        password = self.cleaned_data.get("password")
        address = client_address(self.request)
        if not username or not password:
            return self.cleaned_data
        if login_locked(username=username, remote_addr=address):
            audit_record(user=None, action="login", outcome="denied", request=self.request,
                         detail=f"locked out: {username}")
            raise forms.ValidationError(locked_message(), code="locked")
        self.user_cache = authenticate(self.request, username=username, password=password)
        if self.user_cache is None:
            reason = self._status_reason(username, password)
            if reason:
                audit_record(user=None, action="login", outcome="denied", request=self.request,
                             detail=f"{username}: {reason[:60]}")
                raise forms.ValidationError(reason, code="inactive")
            login_attempt_record(username=username, remote_addr=address, succeeded=False)
            audit_record(user=None, action="login", outcome="denied", request=self.request,
                         detail=f"wrong password or unknown user ({self.door}): {username}")
            raise self.get_invalid_login_error()
        try:
            # The admin door also asks for staff status (AdminAuthenticationForm).
            self.confirm_login_allowed(self.user_cache)
        except forms.ValidationError:
            audit_record(user=None, action="login", outcome="denied", request=self.request,
                         detail=f"not allowed at the {self.door} login: {username}")
            raise
        login_attempt_record(username=username, remote_addr=address, succeeded=True)
        audit_record(user=self.user_cache, action="login", request=self.request,
                     detail=f"{self.door} login")
        return self.cleaned_data

    @staticmethod
    def _status_reason(username: str, password: str) -> str:
        """Why a correct password still does not log in (only told to who knows the password)."""
        user = get_user_model().objects.filter(username=username).first()
        if user is None or not user.check_password(password):
            return ""
        if user.status in STATUS_MESSAGES and not user.is_superuser:
            return STATUS_MESSAGES[user.status]
        if not user.is_active:
            return INACTIVE_MESSAGE
        return ""


class MedVaultAdminLoginForm(MedVaultLoginForm, AdminAuthenticationForm):
    """``/admin/login/``: the site's lockout and audit, plus the admin's staff check."""

    door = "admin"
    error_messages = {
        **AdminAuthenticationForm.error_messages,
        "invalid_login": MedVaultLoginForm.error_messages["invalid_login"],
    }


class RegistrationForm(UserCreationForm[User]):
    role = forms.ChoiceField(
        label="Professional role",
        choices=[(r.value, r.label) for r in Role if r != Role.ADMINISTRATOR],
        help_text="What you will use MedVault for. An administrator confirms it.",
    )

    class Meta:
        # UserCreationForm.Meta's field_classes, restated (django-stubs does not declare its Meta).
        model = get_user_model()
        fields = ("username", "full_name", "email", "role", "institution")
        field_classes = {"username": UsernameField}
        labels = {"full_name": "Full name", "email": "E-mail", "institution": "Institution"}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for name in ("full_name", "email", "institution"):
            self.fields[name].required = True

    def clean_username(self) -> str:
        # No "a user with that username already exists": that would tell anyone which
        # usernames exist. The view answers a taken name with the same page as a new one.
        return str(self.cleaned_data.get("username") or "")

    def validate_unique(self) -> None:
        exclude = self._get_validation_exclusions()  # type: ignore[attr-defined]  # ModelForm's, not in django-stubs
        exclude.add("username")
        try:
            self.instance.validate_unique(exclude=exclude)
        except forms.ValidationError as exc:
            self._update_errors(exc)  # type: ignore[attr-defined]  # ModelForm's, not in django-stubs

    def username_taken(self) -> bool:
        username = self.cleaned_data.get("username") or ""
        return get_user_model().objects.filter(username__iexact=username).exists()

    def save(self, commit: bool = True) -> Any:
        user = super().save(commit=False)
        user.status = AccountStatus.PENDING
        user.role = self.cleaned_data["role"]
        if commit:
            user.save()
        return user


class TokenCreateForm(forms.Form):
    name = forms.CharField(max_length=100, required=False, label="Token name",
                           help_text="For example the program or computer that will use it.")


class GroupCreateForm(forms.Form):
    name = forms.CharField(max_length=150, label="New group (department or site)")


class AuditFilterForm(forms.Form):
    user = forms.CharField(required=False, label="User")
    patient = forms.CharField(required=False, label="Patient ID")
    action = forms.CharField(required=False, label="Action")
    outcome = forms.ChoiceField(
        required=False, choices=[("", "any"), ("ok", "ok"), ("denied", "denied"), ("error", "error")]
    )
    date_from = forms.DateField(required=False, label="From", widget=forms.DateInput(attrs={"type": "date"}))
    date_to = forms.DateField(required=False, label="To", widget=forms.DateInput(attrs={"type": "date"}))


class ShareForm(forms.Form):
    username = forms.CharField(required=False, label="Share with user (username)")
    group = forms.ModelChoiceField(queryset=Group.objects.all().order_by("name"), required=False,
                                   label="…or with a group")
    expires = forms.DateField(label="Until (inclusive)", widget=forms.DateInput(attrs={"type": "date"}))
    note = forms.CharField(required=False, max_length=200, label="Note")

    def clean(self) -> dict[str, Any]:
        super().clean()
        data = self.cleaned_data
        username = (data.get("username") or "").strip()
        group = data.get("group")
        if bool(username) == bool(group):
            raise forms.ValidationError("Choose either one user or one group to share with.")
        if username:
            user = get_user_model().objects.filter(username=username, is_active=True).first()
            if user is None:
                raise forms.ValidationError(f"There is no active user named “{username}”.")
            data["user"] = user
        return data
