"""The shared accounts contract: audit trail, permissions, tokens, API authentication."""

from __future__ import annotations

import base64
from datetime import timedelta

import pytest
from django.http import JsonResponse
from django.test import RequestFactory
from django.utils import timezone
from mvfixtures import make_user

from medvault.accounts.api_auth import api_login_required, api_user
from medvault.accounts.audit import audit_record
from medvault.accounts.models import ApiToken, AuditRecord
from medvault.accounts.permissions import is_deidentified_user, user_can
from medvault.accounts.services import share_create, share_revoke
from medvault.accounts.tokens import token_create, token_revoke
from medvault.archive.access import visible_to


@pytest.mark.django_db
def test_audit_records_are_append_only(clinician_a):
    audit_record(user=clinician_a, action="view", study_uid="1.2.3", remote_addr="10.0.0.1")
    record = AuditRecord.objects.get()
    assert (record.username, record.action, record.outcome, record.remote_addr) == ("cla", "view", "ok", "10.0.0.1")
    record.detail = "tampered"
    with pytest.raises(PermissionError):
        record.save()
    with pytest.raises(PermissionError):
        record.delete()
    with pytest.raises(PermissionError):
        AuditRecord.objects.all().delete()
    with pytest.raises(PermissionError):
        AuditRecord.objects.filter(pk=record.pk).update(detail="x")
    assert AuditRecord.objects.get().detail == ""


@pytest.mark.django_db
def test_audit_record_for_anonymous_denial():
    from django.contrib.auth.models import AnonymousUser

    audit_record(user=AnonymousUser(), action="view", outcome="denied", request=RequestFactory().get("/"))
    record = AuditRecord.objects.get()
    assert record.user is None and record.outcome == "denied" and record.remote_addr == "127.0.0.1"


@pytest.mark.django_db
def test_role_matrix(admin_user, clinician_a, technician_a, researcher_a):
    assert all(user_can(admin_user, a) for a in ("upload", "view", "analyse", "search", "admin"))
    assert [user_can(clinician_a, a) for a in ("upload", "view", "analyse", "search", "admin")] == [
        True,
        True,
        True,
        True,
        False,
    ]
    assert [user_can(technician_a, a) for a in ("upload", "view", "analyse", "search", "admin")] == [
        True,
        True,
        False,
        True,
        False,
    ]
    assert [user_can(researcher_a, a) for a in ("upload", "view", "analyse", "search", "admin")] == [
        False,
        True,
        False,
        True,
        False,
    ]
    assert is_deidentified_user(researcher_a) and not is_deidentified_user(clinician_a)
    pending = make_user("pend", "clinician", status="pending")
    assert not user_can(pending, "view")
    clinician_a.is_active = False
    assert not user_can(clinician_a, "view")


@pytest.mark.django_db
def test_visible_studies_by_group_upload_and_share(group_a, clinician_a, clinician_b, technician_a,
                                                   researcher_a, admin_user, study_a, study_b):
    from mvfixtures import make_study

    assert list(visible_to(clinician_a)) == [study_a]
    assert list(visible_to(clinician_b)) == [study_b]
    assert list(visible_to(researcher_a)) == [study_a]
    assert set(visible_to(admin_user)) == {study_a, study_b}
    # A technician sees only what they uploaded, not the rest of their group.
    assert list(visible_to(technician_a)) == []
    own = make_study(group_a, uploaded_by=technician_a)
    assert list(visible_to(technician_a)) == [own]
    # A share gives read access until it expires or is revoked.
    share = share_create(study=study_b, by=clinician_b, user=clinician_a,
                         expires_at=timezone.now() + timedelta(days=1))
    assert set(visible_to(clinician_a)) == {study_a, own, study_b}
    share_revoke(share=share, by=clinician_b)
    assert set(visible_to(clinician_a)) == {study_a, own}
    expired = share_create(
        study=study_b, by=clinician_b, group=group_a, expires_at=timezone.now() + timedelta(seconds=60)
    )
    assert study_b in visible_to(researcher_a)
    type(expired).objects.filter(pk=expired.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert study_b not in visible_to(researcher_a)
    assert list(AuditRecord.objects.filter(action__startswith="share").values_list("action", flat=True)) == [
        "share", "share-revoke", "share"
    ]


@pytest.mark.django_db
def test_tokens_are_stored_hashed_and_authenticate(clinician_a):
    token, key = token_create(user=clinician_a, name="viewer")
    assert key not in token.key_hash and not ApiToken.objects.filter(key_hash=key).exists()
    rf = RequestFactory()
    assert api_user(rf.get("/api/", HTTP_AUTHORIZATION=f"Token {key}")) == clinician_a
    basic = base64.b64encode(f"cla:{key}".encode()).decode()
    assert api_user(rf.get("/api/", HTTP_AUTHORIZATION=f"Basic {basic}")) == clinician_a
    wrong_user = base64.b64encode(f"someone:{key}".encode()).decode()
    assert api_user(rf.get("/api/", HTTP_AUTHORIZATION=f"Basic {wrong_user}")) is None
    # The account password is not a token.
    pw = base64.b64encode(b"cla:Corr3ct-Horse-Battery").decode()
    assert api_user(rf.get("/api/", HTTP_AUTHORIZATION=f"Basic {pw}")) is None
    assert api_user(rf.get("/api/", HTTP_AUTHORIZATION="Token nonsense")) is None
    token_revoke(token=token)
    assert api_user(rf.get("/api/", HTTP_AUTHORIZATION=f"Token {key}")) is None


@pytest.mark.django_db
def test_api_login_required_answers_401_json(clinician_a):
    @api_login_required
    def view(request):
        return JsonResponse({"user": request.user.username})

    rf = RequestFactory()
    response = view(rf.get("/api/v1/x"))
    assert response.status_code == 401
    assert "Token" in response["WWW-Authenticate"] and b"error" in response.content
    _, key = token_create(user=clinician_a)
    ok = view(rf.post("/api/v1/x", HTTP_AUTHORIZATION=f"Token {key}"))
    assert ok.status_code == 200 and b"cla" in ok.content
    # A token of a deactivated account no longer works.
    clinician_a.is_active = False
    clinician_a.save()
    assert view(rf.get("/api/v1/x", HTTP_AUTHORIZATION=f"Token {key}")).status_code == 401
    # Refused credentials leave a trace; a request without any does not flood the trail.
    assert AuditRecord.objects.filter(action="api-auth", outcome="denied").count() == 1


@pytest.mark.django_db
def test_management_commands(capsys, monkeypatch):
    from django.core.management import call_command

    from medvault.accounts.models import User

    monkeypatch.delenv("MEDVAULT_ADMIN_PASSWORD", raising=False)
    call_command("ensure_admin")
    out = capsys.readouterr().out
    password = out.split("password: ")[1].split()[0]
    admin = User.objects.get(username="admin")
    assert admin.check_password(password) and admin.role == "administrator" and admin.status == "approved"
    call_command("ensure_admin")
    assert "nothing to do" in capsys.readouterr().out
    assert User.objects.filter(role="administrator").count() == 1

    pending = make_user("newbie", "clinician", status="pending")
    call_command("approve", "newbie")
    pending.refresh_from_db()
    assert pending.status == "approved"
    call_command("token", "newbie")
    key = capsys.readouterr().out.strip().splitlines()[-1]
    assert api_user(RequestFactory().get("/", HTTP_AUTHORIZATION=f"Token {key}")) == pending


@pytest.mark.django_db
def test_ensure_admin_uses_env_password(monkeypatch):
    from django.core.management import call_command

    from medvault.accounts.models import User

    monkeypatch.setenv("MEDVAULT_ADMIN_PASSWORD", "env-Supplied-pass-123")
    call_command("ensure_admin")
    assert User.objects.get(username="admin").check_password("env-Supplied-pass-123")
