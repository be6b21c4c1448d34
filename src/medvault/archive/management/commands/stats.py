"""``medvault stats``: archive counts, sizes, compression ratios and patient conflicts (JSON)."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from medvault.archive.selectors import archive_stats


class Command(BaseCommand):
    help = "Print archive statistics as JSON."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--conflicts-limit", type=int, default=1000,
                            help="list at most this many patient conflicts (the count is exact)")

    def handle(self, *args: Any, **options: Any) -> None:
        stats = archive_stats(conflicts_limit=options["conflicts_limit"])
        self.stdout.write(json.dumps(stats, indent=2, default=str))
