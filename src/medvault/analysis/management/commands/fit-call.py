"""``medvault fit-call lung-ct|brain-mri``: fit a model's call rule on internal data only.

Writes ``models/<name>-ood.npz`` (near-OOD statistics from the training split),
``models/<name>-intensity.npz`` (the training split's intensity profiles) and
``card["call"]`` (thresholds chosen on the internal validation split). ``medvault train`` runs
this after exporting; run it alone to refit the rule of shipped weights. Never reads
``../shared/data/external``. Needs ../shared/data.
"""

from __future__ import annotations

import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = "Fit the abnormal/normal/indeterminate call rule of a model on internal data."

    def add_arguments(self, parser):  # type: ignore[no-untyped-def]
        parser.add_argument("name", choices=["lung-ct", "brain-mri"])
        parser.add_argument("--models-dir", type=Path, default=Path("models"))
        parser.add_argument("--data", type=Path, help="data folder (default ../shared/data)")

    def handle(self, *args, **opts):  # type: ignore[no-untyped-def]
        from medvault.training.calls import fit_call
        from medvault.training.data import default_data_dir

        data_dir = opts["data"] or default_data_dir()
        if not (data_dir / "chest_ct").is_dir():
            raise CommandError(f"data folder {data_dir} not found (see ../shared/data/README.md)")
        if not (opts["models_dir"] / f"{opts['name']}.json").is_file():
            raise CommandError(f"no model card {opts['name']}.json in {opts['models_dir']}")
        call = fit_call(opts["name"], opts["models_dir"], data_dir,
                        progress=lambda m: self.stdout.write(json.dumps(m)))
        self.stdout.write(json.dumps(call))
