"""``medvault ensemble NAME --members A.onnx B.onnx [--tta-flip]``: serve several members as one."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = (
        "Combine trained models (each with its card beside it) into one ONNX graph that averages "
        "their logits and heat-maps, optionally over each slice's left-right mirror image too; "
        "fit its temperature and call rule on the internal validation split; write its card."
    )

    def add_arguments(self, parser):  # type: ignore[no-untyped-def]
        parser.add_argument("name", choices=["lung-ct", "brain-mri"])
        parser.add_argument("--members", type=Path, nargs="+", required=True,
                            help="member ONNX files; the first one's embedding is served")
        parser.add_argument("--tta-flip", action="store_true",
                            help="also average over each slice's left-right mirror image")
        parser.add_argument("--out", type=Path, required=True, help="folder for the ensemble")
        parser.add_argument("--data", type=Path, help="data folder (default ../shared/data)")
        parser.add_argument("--threads", type=int, default=2)

    def handle(self, *args, **opts):  # type: ignore[no-untyped-def]
        from medvault.training.calls import fit_call
        from medvault.training.ensemble import make_ensemble

        for member in opts["members"]:
            if not member.is_file() or not member.with_suffix(".json").is_file():
                raise CommandError(f"{member}: no such ONNX file with its card beside it")
        out = opts["out"]
        if any(out.resolve() == m.parent.resolve() for m in opts["members"]):
            raise CommandError("--out must not be a member's folder (the card would be overwritten)")

        def progress(msg: dict[str, Any]) -> None:
            self.stdout.write(json.dumps(msg))
            self.stdout.flush()

        try:
            make_ensemble(opts["name"], opts["members"], opts["tta_flip"], out, opts["data"],
                          opts["threads"], progress)
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        fit_call(opts["name"], out, opts["data"], threads=opts["threads"], progress=progress)
