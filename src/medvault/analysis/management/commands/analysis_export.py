"""``medvault analysis_export RESULT_ID [--user NAME]``: store a result as a DICOM Secondary
Capture (image with the heat-map burned in) in the same study, and print it as JSON."""

from __future__ import annotations

import json
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from medvault.analysis import services
from medvault.analysis.models import DISCLAIMER, AnalysisResult
from medvault.archive.outcomes import StoreStatus


class Command(BaseCommand):
    help = "Export an analysis result as a DICOM Secondary Capture in the same study."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("result_id", type=int)
        parser.add_argument("--user", default="", help="record the export as this user")

    def handle(self, *args: Any, **options: Any) -> None:
        result = (
            AnalysisResult.objects.select_related("instance__series__study__patient")
            .filter(pk=options["result_id"])
            .first()
        )
        if result is None:
            raise CommandError(f"no analysis result {options['result_id']}")
        user = None
        if options["user"]:
            user = get_user_model().objects.filter(username=options["user"]).first()
            if user is None:
                raise CommandError(f"no user {options['user']!r}")
        try:
            stored = services.result_export(result=result, user=user)
        except services.AnalysisError as exc:
            raise CommandError(str(exc)) from None
        if stored.status is StoreStatus.REJECTED:
            raise CommandError(f"the archive rejected the export: {stored.reason}")
        self.stdout.write(
            json.dumps(
                {
                    "status": stored.status,
                    "sop_instance_uid": stored.sop_instance_uid,
                    "study_instance_uid": result.instance.series.study.study_instance_uid,
                    "disclaimer": DISCLAIMER,
                }
            )
        )
