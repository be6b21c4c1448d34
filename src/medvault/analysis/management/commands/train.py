"""``medvault train lung-ct|brain-mri|domain``: rebuild a shipped model from ../shared/data."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = (
        "Train, calibrate, evaluate and export a model (ONNX + model card) from the real "
        "images in ../shared/data. Needs the [train] extra (torch). Resumable with --resume."
    )

    def add_arguments(self, parser):  # type: ignore[no-untyped-def]
        parser.add_argument("name", choices=["lung-ct", "brain-mri", "domain"])
        parser.add_argument(
            "--out",
            type=Path,
            default=Path("models"),
            help="where the ONNX file and card go (default: models/)",
        )
        parser.add_argument("--epochs", type=int, help="override the recipe's epoch count")
        parser.add_argument(
            "--resume", action="store_true", help="continue from var/ml/<name>/checkpoint.pt"
        )
        parser.add_argument(
            "--smoke",
            action="store_true",
            help="a few steps on a small subset (CI); writes <name>-smoke.*",
        )
        parser.add_argument("--data", type=Path, help="data folder (default ../shared/data)")
        parser.add_argument(
            "--work",
            type=Path,
            default=Path("var/ml"),
            help="checkpoints and pixel cache (default var/ml, never committed)",
        )
        parser.add_argument("--device", default="cpu", help="torch device (default cpu)")
        parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
        parser.add_argument(
            "--robust-aug",
            type=float,
            nargs="?",
            const=1.0,
            default=None,
            metavar="P",
            help="give this share of each batch (default 1) the stronger geometric + intensity "
            "augmentation (window jitter, bias field, blur, resampling, noise, JPEG); see "
            "docs/models.md for which recipe the shipped weights used",
        )
        parser.add_argument(
            "--lung-fields",
            action="store_true",
            help="lung-ct: the model sees only the lung fields (everything else black, in "
            "training and in serving; the card records it as input.mask)",
        )
        parser.add_argument(
            "--fine-cam",
            action="store_true",
            help="the last stage keeps its input's resolution: a 16 x 16 heat-map at 128 px "
            "instead of 8 x 8 (about 1.6x the training time)",
        )
        parser.add_argument(
            "--width",
            type=int,
            choices=(16, 24, 32, 48),
            help="channels of the first stage; the next three double it (default 24: "
            "24-48-96-192, 0.75 M parameters; 32: 1.33 M, about 1.3x the training time)",
        )
        parser.add_argument(
            "--input-size",
            type=int,
            choices=(96, 112, 128, 160, 192, 224),
            help="served input size in pixels: the second half of training runs at it "
            "(default: the recipe's, 96 for brain-mri and 128 for lung-ct)",
        )

        parser.add_argument(
            "--cam-lung",
            type=float,
            metavar="W",
            help="lung-ct: add W x a loss that asks each cancer slice's heat-map to peak inside "
            "the lung fields (medvault.training.train.cam_lung_loss)",
        )
        parser.add_argument(
            "--contrast-remap",
            type=float,
            metavar="P",
            help="brain-mri: give this share of each batch a random non-monotonic grey-level "
            "curve, so that the MR sequence (T1, T2, FLAIR) cannot tell the classes apart",
        )
        parser.add_argument(
            "--synthetic-lesions",
            type=float,
            metavar="P",
            help="brain-mri: paint a synthetic non-enhancing lesion into this share of each "
            "batch's no-tumour slices and train them as glioma (medvault.training.lesions)",
        )
        parser.add_argument(
            "--seed",
            type=int,
            help="initialises the weights and orders the batches (default 1337); the "
            "train/validation split never changes",
        )

    def handle(self, *args, **opts):  # type: ignore[no-untyped-def]
        try:
            import torch  # noqa: F401
        except ImportError as exc:
            raise CommandError(
                "training needs the [train] extra: pip install -e '.[train]'"
            ) from exc
        if opts["robust_aug"] is not None and not 0.0 <= opts["robust_aug"] <= 1.0:
            raise CommandError("--robust-aug P takes a share between 0 and 1")
        if opts["lung_fields"] and opts["name"] != "lung-ct":
            raise CommandError("--lung-fields is for lung-ct (chest CT) only")
        overrides: dict[str, Any] = {}
        if opts["robust_aug"] is not None:
            overrides["robust_p"] = opts["robust_aug"]
        if opts["lung_fields"]:
            overrides["input_mask"] = "lung_fields"
        if opts["fine_cam"]:
            overrides["last_stride"] = 1
        if opts["width"]:
            from medvault.training.train import widths_for

            overrides["widths"] = widths_for(opts["width"])
        if opts["cam_lung"] is not None:
            if opts["name"] != "lung-ct" or opts["cam_lung"] < 0:
                raise CommandError("--cam-lung W takes a weight >= 0, for lung-ct only")
            overrides["cam_lung"] = opts["cam_lung"]
        if opts["contrast_remap"] is not None:
            if opts["name"] != "brain-mri" or not 0.0 <= opts["contrast_remap"] <= 1.0:
                raise CommandError("--contrast-remap P takes a share between 0 and 1, for brain-mri only")
            overrides["contrast_p"] = opts["contrast_remap"]
        if opts["synthetic_lesions"] is not None:
            if opts["name"] != "brain-mri" or not 0.0 <= opts["synthetic_lesions"] <= 1.0:
                raise CommandError("--synthetic-lesions P takes a share between 0 and 1, for brain-mri only")
            overrides["lesion_p"] = opts["synthetic_lesions"]
        if opts["seed"] is not None:
            overrides["seed"] = opts["seed"]
        if opts["input_size"] and opts["name"] != "domain":
            from medvault.training.train import sizes_for

            overrides["sizes"] = sizes_for(opts["name"], opts["input_size"])
        from medvault.training.data import default_data_dir

        data_dir = opts["data"] or default_data_dir()
        if not data_dir.is_dir():
            raise CommandError(f"data folder {data_dir} not found (see ../shared/data/README.md)")

        def progress(msg: dict[str, Any]) -> None:
            self.stdout.write(json.dumps(msg))
            self.stdout.flush()

        if opts["name"] == "domain":
            from medvault.training.domain import evaluate_refusal, train_domain

            res = train_domain(
                out_dir=opts["out"],
                smoke=opts["smoke"],
                threads=opts["threads"],
                data_dir=data_dir,
                progress=progress,
                **({"epochs": opts["epochs"]} if opts["epochs"] else {}),
            )
            if not opts["smoke"]:
                from medvault.training.finalize import finalize_cards

                finalize_cards(opts["out"], evaluate_refusal(opts["out"], res["sets"]), progress)
            return
        from medvault.training.train import TrainConfig, train_model

        result = train_model(
            TrainConfig(
                name=opts["name"],
                out_dir=opts["out"],
                epochs=opts["epochs"],
                resume=opts["resume"],
                smoke=opts["smoke"],
                data_dir=data_dir,
                device=opts["device"],
                threads=opts["threads"],
                recipe_overrides=overrides,
            ),
            progress,
        )
        if not opts["smoke"] and result.get("card"):
            # the call rule belongs to these weights: refit it on internal data
            from medvault.training.calls import fit_call

            fit_call(opts["name"], opts["out"], data_dir, progress=progress)
