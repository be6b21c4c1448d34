"""The two paths that serve two services: ``/studies`` (QIDO-RS search, STOW-RS store) and
``/studies/{study}`` (WADO-RS retrieve, STOW-RS store into that study)."""

from __future__ import annotations

from django.http import HttpRequest
from django.http.response import HttpResponseBase
from django.views.decorators.csrf import csrf_exempt

from medvault.dicomweb.views.qido import all_studies
from medvault.dicomweb.views.stow import stow
from medvault.dicomweb.views.wado import retrieve_study


@csrf_exempt
def studies(request: HttpRequest) -> HttpResponseBase:
    if request.method == "POST":
        return stow(request)
    return all_studies(request)


@csrf_exempt
def study(request: HttpRequest, study: str) -> HttpResponseBase:
    if request.method == "POST":
        return stow(request, study=study)
    return retrieve_study(request, study=study)
