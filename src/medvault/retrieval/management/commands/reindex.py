"""``medvault reindex --model NAME``: (re-)embed every applicable instance; resumable."""

from __future__ import annotations

import json
import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from medvault.retrieval.services import embeddings_reindex


class Command(BaseCommand):
    help = ("Embed every instance the model applies to with the installed model version. "
            "Instances already embedded with that version are skipped, so an interrupted run "
            "continues where it stopped.")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--model", required=True, help="lung-ct or brain-mri")
        parser.add_argument("--limit", type=int, default=0, help="stop after this many instances")
        parser.add_argument("--no-index", action="store_true",
                            help="do not build and save the search index afterwards")

    def handle(self, *args: Any, **opts: Any) -> None:
        from medvault.core.ml import MODEL_NAMES
        from medvault.retrieval.query import QueryError

        if opts["model"] not in MODEL_NAMES:
            raise CommandError(f"unknown model {opts['model']!r}; known: {', '.join(MODEL_NAMES)}")
        t0 = time.monotonic()

        def progress(done: int, total: int) -> None:
            rate = done / max(time.monotonic() - t0, 1e-6)
            left = (total - done) / rate if rate else 0
            self.stderr.write(f"{done}/{total} embedded ({rate:.1f}/s, about {left:.0f} s left)")

        try:
            report = embeddings_reindex(model_name=opts["model"], limit=opts["limit"] or None,
                                        progress=progress, build_index=not opts["no_index"])
        except QueryError as exc:
            raise CommandError(exc.message) from exc
        report["seconds"] = round(time.monotonic() - t0, 1)
        self.stdout.write(json.dumps(report))
