"""Web pages: home, upload, study search, study page, sharing, previous results, errors."""

from __future__ import annotations

from datetime import datetime, time, timedelta
from typing import Any
from urllib.parse import quote, urlencode

from django import forms
from django.conf import settings
from django.contrib import messages
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from medvault.accounts import permissions
from medvault.accounts import services as account_services
from medvault.accounts.audit import audit_record
from medvault.accounts.decorators import page_login_required, role_required
from medvault.accounts.deid import patient_label, retain_dates
from medvault.accounts.forms import ShareForm
from medvault.accounts.models import StudyShare
from medvault.analysis.selectors import results_for_study, results_visible_to
from medvault.archive import access
from medvault.archive.access import audit_view, visible_series_or_404, visible_study_or_404
from medvault.archive.models import Study
from medvault.archive.outcomes import StoreStatus
from medvault.archive.query.wildcard import MAX_PATTERN_LENGTH
from medvault.ui import selectors

MODEL_TITLES = {
    "lung-ct": "Lung cancer detection (chest CT)",
    "brain-mri": "Brain tumour detection (MRI)",
}
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
CALL_TEXT = {
    "abnormal": "Abnormal",
    "normal": "Normal",
    "indeterminate": "Indeterminate",
}


def home(request: HttpRequest) -> HttpResponse:
    if not permissions.is_active_user(request.user):
        return render(request, "ui/landing.html", {"nav": "home"})
    deid = permissions.is_deidentified_user(request.user)
    similar = similar_link(request.user)
    studies = list(access.visible_to(request.user).select_related("patient").order_by("-created_at")[:8])
    rows = [_study_row(s, deid) for s in studies]
    context: dict[str, Any] = {
        "nav": "home", "studies": rows, "analyses": [_result_row(r, deid, similar)
                                                           for r in selectors.recent_analyses(request.user)],
        "deid": deid,
    }
    if permissions.is_administrator(request.user):
        from medvault.accounts.models import AccountStatus, User

        context["storage"] = selectors.storage_figures()
        context["pending_users"] = User.objects.filter(status=AccountStatus.PENDING).count()
    return render(request, "ui/home.html", context)


def _study_row(study: Any, deid: bool) -> dict[str, Any]:
    name, pid = patient_label(study.patient, deid)
    return {
        "study": study, "patient_name": name, "patient_id": pid,
        "birth_date": None if deid else study.patient.patient_birth_date,
        "accession": "" if deid else study.accession_number,
        # PS3.15 Annex E (medvault.accounts.deid): free text always goes, dates unless kept.
        "description": "" if deid else study.study_description,
        "study_date": None if deid and not retain_dates() else study.study_date,
        "modalities": study.modalities_in_study.replace("\\", ", "),
    }


def similar_link(user: Any) -> str:
    """URL template of the "Find similar" grid (``__UID__`` for the instance) when the user may
    search and the retrieval app is installed; "" otherwise (then no button is shown)."""
    if not permissions.user_can(user, "search"):
        return ""
    from medvault.ui.viewer import _similar_url

    return _similar_url()


def _result_row(result: Any, deid: bool, similar: str = "") -> dict[str, Any]:
    probabilities = result.probabilities or {}
    confidence = None
    if result.label and result.label in probabilities:
        confidence = probabilities[result.label]
    elif probabilities:
        confidence = max(probabilities.values())
    study = result.instance.series.study
    name, pid = patient_label(study.patient, deid)
    return {
        "result": result,
        "title": MODEL_TITLES.get(result.model_name, result.model_name),
        "outcome": ("Not analysed: " + result.reason) if result.refused else (result.label or "").replace("_", " "),
        "confidence": confidence,
        "user": "" if deid else _requester(result),
        # The call first (what it means), the label and probability second.
        "call": "" if result.refused else (getattr(result, "call", "") or ""),
        "call_text": CALL_TEXT.get("" if result.refused else (getattr(result, "call", "") or ""), ""),
        "call_reason": getattr(result, "call_reason", ""),
        "card_url": f"/models/{result.model_name}/" if result.model_name in MODEL_TITLES else "",
        "patient_name": name,
        "patient_id": pid,
        "study": study,
        "sop_uid": result.instance.sop_instance_uid,
        "series_uid": result.instance.series.series_instance_uid,
        # A refused analysis has no embedding of that model to search with.
        "similar_url": ""
        if (result.refused or not similar)
        else similar.replace("__UID__", quote(result.instance.sop_instance_uid, safe=""))
        + "?"
        + urlencode({"model": result.model_name}),
    }


def _requester(result: Any) -> str:
    """Who asked for an analysis; "on upload" when the archive queued it at ingest."""
    job = getattr(result, "job", None)
    automatic = getattr(job, "trigger", "") == "ingest"
    name = result.requested_by.get_username() if result.requested_by else ""
    if automatic:
        return f"on upload ({name})" if name else "on upload"
    return name or "—"


# --- Upload ------------------------------------------------------------------------------
@role_required("upload")
def upload(request: HttpRequest) -> HttpResponse:
    groups = permissions.upload_groups(request.user)
    return render(request, "ui/upload.html", {
        "nav": "upload", "groups": groups, "max_bytes": settings.MEDVAULT_MAX_UPLOAD_BYTES,
        "modalities": ["CT", "MR", "CR", "DX", "US", "PT", "MG", "XA", "OT"],
    })


def _upload_error(message: str, status: int = 400) -> JsonResponse:
    return JsonResponse({"error": message}, status=status)


@require_POST
@role_required("upload")
def upload_file(request: HttpRequest) -> HttpResponse:
    """One file (DICOM, ZIP, PNG/JPEG) -> the archive's one ingest service -> per-file results."""
    upload = request.FILES.get("file")
    if upload is None:
        return _upload_error("No file was sent.")
    # The one rule of every door: the group named (one of the user's) or their only group.
    requested = str(request.POST.get("group") or "").strip()
    try:
        group = permissions.ingest_group(request.user, int(requested) if requested.isdigit() else None)
    except permissions.GroupChoiceError:
        groups = permissions.upload_groups(request.user)
        return _upload_error("Choose the group (department or site) the images belong to."
                             if groups.exists() else
                             "You are not a member of any group yet; ask an administrator to add you to one.")
    if (upload.size or 0) > settings.MEDVAULT_MAX_UPLOAD_BYTES:
        return _upload_error("The file is larger than this server accepts.", 413)
    name = upload.name or "upload"
    image_fields = None
    if name.lower().endswith(IMAGE_SUFFIXES):
        image_fields = {
            k: request.POST.get(k, "").strip()
            for k in ("patient_id", "patient_name", "modality", "body_part", "study_description")
        }
        missing = [
            label
            for key, label in (("patient_id", "patient ID"), ("patient_name", "patient name"), ("modality", "modality"))
            if not image_fields[key]
        ]
        if missing:
            return _upload_error("A PNG or JPEG image needs " + ", ".join(missing) + ".")
    from medvault.archive.uploads import upload_store

    data = upload.read()
    try:
        results = upload_store(
            name=name, data=data, source="web", user=request.user, group=group, image_fields=image_fields
        )
    except Exception as exc:  # noqa: BLE001 - report, never show a stack trace
        audit_record(
            user=request.user, action="upload", outcome="error", request=request, detail=f"{name}: {exc}"[:500]
        )
        return _upload_error(f"The file could not be stored: {exc}", 500)
    out = []
    visible = set(access.visible_to(request.user).filter(
        pk__in=[r.instance.series.study_id for r in results if r.instance is not None]
    ).values_list("pk", flat=True))
    for result in results:
        instance = result.instance
        study = instance.series.study if instance is not None else None
        audit_record(
            user=request.user, action="upload", request=request,
            outcome="ok" if result.status in (StoreStatus.STORED, StoreStatus.DUPLICATE) else "error",
            patient_id=study.patient.patient_id if study else "", study_uid=study.study_instance_uid if study else "",
            series_uid=instance.series.series_instance_uid if instance else "", sop_uid=result.sop_instance_uid or "",
            detail=f"{result.path or name}: {result.status}{' - ' + result.reason if result.reason else ''}"[:500],
        )
        out.append({
            "path": result.path or name, "status": result.status, "reason": result.reason,
            "sop_instance_uid": result.sop_instance_uid,
            # A duplicate may already live in a study the uploader cannot see: no link then.
            "study_url": f"/studies/{study.study_instance_uid}/" if study and study.pk in visible else None,
        })
    return JsonResponse({"results": out})


# --- Studies -----------------------------------------------------------------------------
class StudySearchForm(forms.Form):
    # Text fields are capped at the wildcard matcher's pattern length (a longer value could
    # not match anything a DICOM attribute holds).
    patient_name = forms.CharField(required=False, label="Patient name", max_length=MAX_PATTERN_LENGTH,
                                   help_text="* and ? are wildcards; case does not matter")
    patient_id = forms.CharField(required=False, label="Patient ID", max_length=MAX_PATTERN_LENGTH)
    accession = forms.CharField(required=False, label="Accession number", max_length=MAX_PATTERN_LENGTH)
    date_from = forms.DateField(required=False, label="Study date from", widget=forms.DateInput(attrs={"type": "date"}))
    date_to = forms.DateField(required=False, label="to", widget=forms.DateInput(attrs={"type": "date"}))
    modality = forms.CharField(required=False, label="Modality", max_length=16)
    description = forms.CharField(required=False, label="Description", max_length=MAX_PATTERN_LENGTH)


@role_required("search")
def studies(request: HttpRequest) -> HttpResponse:
    deid = permissions.is_deidentified_user(request.user)
    form = StudySearchForm(request.GET or None)
    query = selectors.StudyQuery(sort=request.GET.get("sort", "-date"))
    if form.is_valid():
        data = form.cleaned_data
        query = selectors.StudyQuery(
            patient_name="" if deid else data["patient_name"], patient_id="" if deid else data["patient_id"],
            accession="" if deid else data["accession"],
            date_from=None if deid and not retain_dates() else data["date_from"],
            date_to=None if deid and not retain_dates() else data["date_to"],
            modality=data["modality"], description="" if deid else data["description"], sort=query.sort,
        )
    if deid:
        for name in ("patient_name", "patient_id", "accession", "description") + (
            () if retain_dates() else ("date_from", "date_to")
        ):
            form.fields.pop(name, None)
    # A search with an invalid field (e.g. "2024-13-45" as a date) lists nothing: showing every
    # study, unfiltered, under "Enter a valid date." would look like the search's answer.
    invalid = form.is_bound and not form.is_valid()
    results = Study.objects.none() if invalid else selectors.study_search(user=request.user, query=query)
    page = Paginator(results, 25).get_page(request.GET.get("page"))
    audit_record(user=request.user, action="search", request=request,
                 outcome="ok" if form.is_valid() or not request.GET else "error",
                 detail=f"studies: {request.GET.urlencode()[:400]} -> {page.paginator.count}")
    return render(request, "ui/studies.html", {
        "nav": "studies", "form": form, "page": page, "rows": [_study_row(s, deid) for s in page],
        "sort": query.sort, "deid": deid, "retain_dates": retain_dates(), "invalid": invalid,
        **_sort_links(query.sort),
    })


def _sort_links(sort: str) -> dict[str, dict[str, str]]:
    """For each column: the sort a click on its header asks for, and the arrow it shows now."""
    nxt, arrows = {}, {}
    for col in ("name", "pid", "accession", "date", "modality", "description", "images"):
        descending_first = col in ("date", "images")
        if sort == col:
            nxt[col], arrows[col] = f"-{col}", " ↑"
        elif sort == f"-{col}":
            nxt[col], arrows[col] = col, " ↓"
        else:
            nxt[col], arrows[col] = (f"-{col}" if descending_first else col), ""
    return {"next": nxt, "arrows": arrows}


@role_required("view")
def study_detail(request: HttpRequest, study_uid: str) -> HttpResponse:
    study = visible_study_or_404(request, study_uid)
    deid = permissions.is_deidentified_user(request.user)
    audit_view(request, study, detail="study page")
    series = list(selectors.study_series(study))
    # Only the study's own group shares it: a share is read-only and never passed on.
    can_share = (permissions.user_can(request.user, "share") and study.group_id is not None
                 and access.study_writable(request.user, study))
    shares = (
        list(study.shares.select_related("shared_with_user", "shared_with_group", "shared_by")) if can_share else []
    )
    similar = similar_link(request.user)
    analyses = [_result_row(r, deid, similar) for r in results_for_study(study=study, user=request.user)[:50]]
    return render(request, "ui/study.html", {
        "nav": "studies", "row": _study_row(study, deid), "study": study, "series": series, "deid": deid,
        "can_share": can_share, "shares": shares, "now": timezone.now(),
        "share_form": ShareForm(initial={"expires": (timezone.now() + timedelta(days=14)).date()}),
        "analyses": analyses,
        "can_download": permissions.user_can(request.user, "download") and not deid,
    })


@require_POST
@role_required("share")
def share_create(request: HttpRequest, study_uid: str) -> HttpResponse:
    study = visible_study_or_404(request, study_uid)
    if not access.study_writable(request.user, study):
        # Read-only recipients of a share may not pass it on.
        audit_record(user=request.user, action="share", outcome="denied", request=request,
                     study_uid=study.study_instance_uid, detail="not a member of the study's group")
        messages.error(request, "Only members of the study's own group can share it.")
        return redirect("ui:study", study_uid=study_uid)
    form = ShareForm(request.POST)
    if form.is_valid():
        expires = datetime.combine(form.cleaned_data["expires"], time.max, tzinfo=timezone.get_current_timezone())
        try:
            account_services.share_create(
                study=study, by=request.user, expires_at=expires, user=form.cleaned_data.get("user"),
                group=form.cleaned_data.get("group"), note=form.cleaned_data.get("note", ""), request=request,
            )
            messages.success(request, "Shared read-only until " + form.cleaned_data["expires"].isoformat() + ".")
        except ValueError as exc:
            messages.error(request, str(exc).capitalize() + ".")
    else:
        messages.error(request, " ".join(str(e) for errs in form.errors.values() for e in errs))
    return redirect("ui:study", study_uid=study_uid)


@require_POST
@role_required("share")
def share_revoke(request: HttpRequest, share_id: int) -> HttpResponse:
    share = get_object_or_404(StudyShare.objects.select_related("study"), pk=share_id)
    study = visible_study_or_404(request, share.study.study_instance_uid)
    if not (share.shared_by_id == request.user.pk or access.study_writable(request.user, study)):
        audit_record(user=request.user, action="share-revoke", outcome="denied", request=request,
                     study_uid=study.study_instance_uid)
        messages.error(request, "You cannot revoke this share.")
    else:
        account_services.share_revoke(share=share, by=request.user, request=request)
        messages.success(request, f"The share with {share.recipient} is revoked.")
    return redirect("ui:study", study_uid=study.study_instance_uid)


@role_required("view")
def series_thumbnail(request: HttpRequest, series_uid: str) -> HttpResponse:
    from medvault.ui.rendering import render_frame_png

    series = visible_series_or_404(request, series_uid)
    instances = list(selectors.series_instances(series))
    if not instances:
        return HttpResponse(status=404)
    middle = instances[len(instances) // 2]
    from medvault.archive.models import Instance

    instance = Instance.objects.get(pk=middle.pk)
    audit_view(request, series.study, series_uid=series_uid, detail="thumbnail", dedupe_seconds=600)
    try:
        png, _, _ = render_frame_png(instance, 0, max_size=256)
    except Exception:  # noqa: BLE001 - a thumbnail that cannot be drawn is not an error page
        return HttpResponse(status=204)
    response = HttpResponse(png, content_type="image/png")
    response["Cache-Control"] = "private, no-store"  # PHI: never outlives the access
    return response


@role_required("download")
def instance_download(request: HttpRequest, sop_uid: str) -> HttpResponse:
    from medvault.archive.access import visible_instance_or_404

    if permissions.is_deidentified_user(request.user):
        audit_record(user=request.user, action="download", outcome="denied", request=request, sop_uid=sop_uid[:64])
        return HttpResponse("Downloads are not available for de-identified access.", status=403)
    instance = visible_instance_or_404(request, sop_uid)
    from medvault.archive.selectors import instance_part10_bytes

    audit_view(request, instance.series.study, action="download", series_uid=instance.series.series_instance_uid,
               sop_uid=instance.sop_instance_uid, detail="Part 10 file")
    data = instance_part10_bytes(instance=instance)
    response = HttpResponse(data, content_type="application/dicom")
    # The file name is ours (a counter), never taken from input.
    response["Content-Disposition"] = f'attachment; filename="instance-{instance.pk}.dcm"'
    return response


# --- Previous results --------------------------------------------------------------------
@page_login_required
def history(request: HttpRequest) -> HttpResponse:
    deid = permissions.is_deidentified_user(request.user)
    page = Paginator(results_visible_to(request.user), 25).get_page(request.GET.get("page"))
    similar = similar_link(request.user)
    rows = [_result_row(r, deid, similar) for r in page]
    if rows:
        audit_record(
            user=request.user,
            action="view",
            request=request,
            detail=f"previous results page {page.number}",
        )
    return render(request, "ui/history.html", {"nav": "history", "rows": rows, "page": page, "deid": deid})


# --- Model cards ---------------------------------------------------------------------------
@page_login_required
def model_card(request: HttpRequest, model_name: str) -> HttpResponse:
    """Intended use, the call rule, internal and external figures and known limits."""
    from django.http import Http404

    from medvault.analysis.selectors import model_card as card_for

    card = card_for(model_name)
    if card is None:
        raise Http404("no such model")
    rows = []
    for section, title in (("internal", "Internal validation"), ("external", "External (other hospitals)")):
        for set_name, fig in card["figures"].get(section, {}).items():
            rows.append({"section": title, "set": set_name, "n": fig["n"],
                         "cells": [fig[k] for k in ("missed_abnormal", "indeterminate_share", "refused_share",
                                                     "accuracy", "sensitivity", "specificity", "auroc", "ece")]})
    return render(request, "ui/model_card.html", {
        "nav": "history", "card": card, "title": MODEL_TITLES.get(model_name, model_name), "rows": rows,
    })
