"""``medvault similar FILE --k 10 [--model NAME]``: print the most similar archived images."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from medvault.retrieval.query import QueryError, file_query_vector
from medvault.retrieval.selectors import SimilarFilters, similar_instances


class Command(BaseCommand):
    help = "Find the archived images most similar to an image file (DICOM, PNG or JPEG); prints JSON."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", help="the query image (it is not stored)")
        parser.add_argument("--k", type=int, default=10, help="number of matches (default 10)")
        parser.add_argument("--model", default=None, help="lung-ct or brain-mri (default: the first that applies)")
        parser.add_argument("--user", default=None,
                            help="only studies this user may see (default: the whole archive)")
        parser.add_argument("--modality", action="append", default=[], help="keep only this modality")
        parser.add_argument("--label", action="append", default=[], help="keep only this analysis label")

    def handle(self, *args: Any, **opts: Any) -> None:
        from medvault.accounts.audit import audit_record
        from medvault.retrieval import conf

        if not 1 <= opts["k"] <= conf.max_k():
            raise CommandError(f"--k must be between 1 and {conf.max_k()}")
        path = Path(opts["file"])
        if not path.is_file():
            raise CommandError(f"no such file: {path}")
        user = None
        if opts["user"]:
            from django.contrib.auth import get_user_model

            user = get_user_model().objects.filter(username=opts["user"]).first()
            if user is None:
                raise CommandError(f"no such user: {opts['user']}")
        try:
            qv = file_query_vector(data=path.read_bytes(), model_name=opts["model"])
            result = similar_instances(
                user=user, vector=qv.vector, model_name=qv.model_name,
                model_version=qv.model_version, k=opts["k"],
                filters=SimilarFilters(modalities=tuple(m.upper() for m in opts["modality"]),
                                       labels=tuple(opts["label"])),
            )
        except QueryError as exc:
            raise CommandError(exc.message) from exc
        audit_record(user=user, action="search", remote_addr="cli",
                     detail=f"cli similar: model={result.model_name} k={opts['k']} matches={len(result.matches)}")
        out = {
            "file": str(path),
            "model": result.model_name,
            "model_version": result.model_version,
            "query_label": qv.label,
            "method": result.method,
            "search_ms": round(result.search_ms, 3),
            "matches": [m.as_json() for m in result.matches],
        }
        self.stdout.write(json.dumps(out))
