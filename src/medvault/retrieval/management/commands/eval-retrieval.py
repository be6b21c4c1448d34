"""``medvault eval-retrieval --model NAME --archive DIR --queries DIR``.

Prints one JSON object as its last line: precision@1, precision@5, precision@10, map@10,
latency_ms_p50 (search time per query), plus counts.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser


class Command(BaseCommand):
    help = ("Evaluate similar-image retrieval on labelled folders (<class>/<file>): embed the "
            "archive folder into a temporary in-memory index, query it with the other folder.")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--model", required=True, help="lung-ct or brain-mri")
        parser.add_argument("--archive", required=True, type=Path, help="labelled folder to search in")
        parser.add_argument("--queries", required=True, type=Path, help="labelled folder of queries")
        parser.add_argument("--index", choices=["hnsw", "exact"], default="hnsw",
                            help="index to search with (default hnsw, as in production)")

    def handle(self, *args: Any, **opts: Any) -> None:
        from medvault.analysis.backends import ModelUnavailable, analysis_backend, model_available
        from medvault.retrieval.evaluation import embed_folder, evaluate

        if not model_available(opts["model"]):
            raise CommandError(f"model {opts['model']!r} is not installed")
        backend = analysis_backend()

        def log(line: str) -> None:
            self.stderr.write(line)

        try:
            archive = embed_folder(opts["archive"], opts["model"], backend.analyse, log)
            queries = embed_folder(opts["queries"], opts["model"], backend.analyse, log)
            result = evaluate(archive, queries, index_kind=opts["index"])
        except (ValueError, ModelUnavailable) as exc:
            raise CommandError(str(exc)) from exc
        result = {"model": opts["model"], **result}
        self.stdout.write(json.dumps(result))
