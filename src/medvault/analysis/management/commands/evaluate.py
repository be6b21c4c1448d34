"""``medvault evaluate --model NAME [--internal] DIR [DIR...]``: score a shipped model.

Each DIR is ``DIR/<class>/<image>`` (see ``medvault.training.scoring`` for the class mappings).
Every image goes through the same ``analyse()`` path as production (domain gate, call rule).
Prints, per set, the confusion table, the call table, accuracy, sensitivity / specificity for
abnormal vs normal, AUROC, ECE, the refused and indeterminate shares and 95 % bootstrap
intervals (by patient where a manifest names one). The last line is JSON.

``--internal`` adds the model's own validation split (the duplicate-grouped split ``medvault
train`` made from ../shared/data). ``--shifted`` adds the same split rendered as another site
might have exported it (``medvault.training.shifts``: one acquisition shift per image), the
internal stand-in for other hospitals that a recipe may be chosen on. ``--write-card
internal|external`` stores the figures in the model card (JSON and Markdown).
Never use external figures to choose anything.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from medvault.analysis.management.commands.predict import read_input

SHIFTED = "internal-shifted"
LESIONS = "internal-synthetic-lesions"


class Command(BaseCommand):
    help = "Score a model on folders of labelled images (DIR/<class>/<image>); last line JSON."

    def add_arguments(self, parser):  # type: ignore[no-untyped-def]
        parser.add_argument("--model", required=True, choices=["lung-ct", "brain-mri"])
        parser.add_argument("--models-dir", type=Path, default=None)
        parser.add_argument("--internal", action="store_true",
                            help="also score the internal validation split (needs ../shared/data)")
        parser.add_argument("--shifted", action="store_true",
                            help="also score the internal validation split under acquisition shifts "
                            "(window, gamma, bias field, blur, resampling, noise, JPEG)")
        parser.add_argument("--synthetic-lesions", action="store_true",
                            help="brain-mri: also score the internal validation split's no-tumour "
                            "slices, each with a synthetic non-enhancing lesion (truth: glioma)")
        parser.add_argument("--data", type=Path, help="data folder for --internal / --shifted")
        parser.add_argument("--resamples", type=int, default=1000,
                            help="bootstrap resamples (0: no intervals)")
        parser.add_argument("--cam-check", action="store_true",
                            help="lung-ct: share of cancer slices whose CAM peak is in the lungs")
        parser.add_argument("--write-card", choices=["internal", "external"],
                            help="store these figures in the model card")
        parser.add_argument("dirs", nargs="*", type=Path)

    def handle(self, *args, **opts):  # type: ignore[no-untyped-def]
        from medvault.core.ml import ModelError, analyse, load_model
        from medvault.core.ml.call import NORMAL_LABEL
        from medvault.core.ml.preprocess import to_gray
        from medvault.training import lesions, scoring, shifts

        if not opts["dirs"] and not (opts["internal"] or opts["shifted"] or opts["synthetic_lesions"]):
            raise CommandError("give at least one DIR, or --internal / --shifted / --synthetic-lesions")
        models_dir = opts["models_dir"]
        if models_dir is None:
            from medvault.analysis.conf import models_dir as configured_models_dir

            models_dir = configured_models_dir()
        name = opts["model"]
        try:
            model = load_model(name, models_dir)
        except ModelError as exc:
            raise CommandError(str(exc)) from exc
        sets: list[tuple[str, list[scoring.Item]]] = []
        if opts["synthetic_lesions"] and name != "brain-mri":
            raise CommandError("--synthetic-lesions applies to brain-mri only")
        if opts["internal"] or opts["shifted"] or opts["synthetic_lesions"]:
            internal = self._internal_items(name, opts["data"])
            if opts["internal"]:
                sets.append(("internal-validation", internal))
            if opts["shifted"]:
                sets.append((SHIFTED, internal))
            if opts["synthetic_lesions"]:
                normal = NORMAL_LABEL[name]
                sets.append((LESIONS, [scoring.Item(it.path, "glioma", it.cluster)
                                       for it in internal if it.truth == normal]))
        for d in opts["dirs"]:
            try:
                sets.append((d.resolve().name, scoring.collect(d)))
            except ValueError as exc:
                raise CommandError(str(exc)) from exc
        cam = None
        if opts["cam_check"]:
            if name != "lung-ct":
                raise CommandError("--cam-check applies to lung-ct only")
            from medvault.training.cam_check import CamCheck

            cam = CamCheck()

        shift_of: dict[Path, tuple[str, int]] = {}  # the current set's shifts (--shifted only)
        lesion_of: dict[Path, int] = {}  # the current set's lesions (--synthetic-lesions only)
        lesion_cam = lesions.LesionCamCheck()

        def predict(path: Path) -> scoring.Outcome:
            img = read_input(path)
            if path in shift_of:
                kind, seed = shift_of[path]
                img = shifts.shift(img, kind, seed)
            lesion = None
            if path in lesion_of:
                img, lesion = lesions.painted(to_gray(img), lesion_of[path])
            out = analyse(model, img)
            if cam is not None and not out.refused:
                cam.add(path, img, out.heatmap)
            if lesion is not None and not out.refused and out.heatmap is not None \
                    and out.label != NORMAL_LABEL[name]:
                lesion_cam.add(path.name, img, lesion, out.heatmap)
            return scoring.Outcome(out.label, out.probabilities, out.refused, out.call,
                                   out.call_reason)

        report: dict[str, Any] = {"model": name, "version": model.version, "sha256": model.sha256,
                        "call_rule": bool(model.call_rule), "sets": {}}
        for set_name, items in sets:
            if cam is not None:
                cam.start(set_name, items)
            shift_of.clear()
            lesion_of.clear()
            if set_name == LESIONS:
                lesion_of.update({it.path: i for i, it in enumerate(items)})
            kinds = [shifts.kind_for(i) for i in range(len(items))] if set_name == SHIFTED else []
            if kinds:
                shift_of.update({it.path: (kind, i) for i, (it, kind) in enumerate(zip(items, kinds, strict=True))})
            try:
                rep, outcomes = scoring.run_set(items, predict, model.labels, NORMAL_LABEL[name],
                                                opts["resamples"])
            except ValueError as exc:
                raise CommandError(f"{set_name}: {exc}") from exc
            rep["examples"] = _failure_examples(items, outcomes, NORMAL_LABEL[name])
            if kinds:
                rep["by_shift"] = _by_shift(items, outcomes, kinds, model.labels, NORMAL_LABEL[name])
            if cam is not None:
                rep["cam_peak_in_lung"] = cam.summary(set_name)
            if set_name == LESIONS:
                rep["cam_peak_in_lesion"] = lesion_cam.summary()
            report["sets"][set_name] = rep
            self.stdout.write(scoring.format_report(set_name, rep))
            if cam is not None:
                self.stdout.write(f"cam_peak_in_lung             {rep['cam_peak_in_lung']}")
            if "cam_peak_in_lesion" in rep:
                self.stdout.write(f"cam_peak_in_lesion           {rep['cam_peak_in_lesion']}")
            if "by_shift" in rep:
                self.stdout.write("by shift (missed_abnormal, accuracy, indeterminate_share, n):")
                for kind, row in rep["by_shift"].items():
                    self.stdout.write(f"  {kind:<20} {row['missed_abnormal']} {row['accuracy']} "
                                      f"{row['indeterminate_share']} {row['n']}")
            self.stdout.write("")
        if opts["write_card"]:
            from medvault.training.card_sections import write_card_section

            write_card_section(models_dir, name, opts["write_card"], report)
        self.stdout.write(json.dumps(report, separators=(",", ":")))

    def _internal_items(self, name: str, data: Path | None) -> list:  # type: ignore[type-arg]
        from medvault.training import scoring
        from medvault.training.calls import internal_split

        try:
            folder, prep = internal_split(name, data)
        except FileNotFoundError as exc:
            raise CommandError(f"internal split needs ../shared/data: {exc}") from exc
        return [scoring.Item(folder / p, prep.labels[int(y)], f"group-{g}")
                for p, y, s, g in zip(prep.paths, prep.y, prep.split, prep.group, strict=True)
                if s == "val"]


def _failure_examples(items: list, outcomes: list, normal_label: str, k: int = 5) -> dict:  # type: ignore[type-arg]
    """A few concrete failures per kind (path relative to the set folder, what was said)."""
    out: dict[str, list[dict[str, Any]]] = {"abnormal_called_normal": [], "wrong_label_confident": [],
                                  "refused": []}
    for it, o in zip(items, outcomes, strict=True):
        rel = f"{it.truth}/{it.path.name}"
        if o.refused:
            bucket, rec = "refused", {"path": rel}
        elif it.truth not in (normal_label, "benign") and o.call == "normal":
            bucket = "abnormal_called_normal"
            rec = {"path": rel, "label": o.label,
                   "p_abnormal": round(1 - o.probabilities[normal_label], 3)}
        elif o.label != it.truth and it.truth not in ("malignant", "benign") \
                and max(o.probabilities.values()) >= 0.8:
            bucket = "wrong_label_confident"
            rec = {"path": rel, "label": o.label,
                   "confidence": round(max(o.probabilities.values()), 3)}
        else:
            continue
        if len(out[bucket]) < k:
            out[bucket].append(rec)
    return out



def _by_shift(items: list, outcomes: list, kinds: list[str], labels: list[str],  # type: ignore[type-arg]
              normal_label: str) -> dict[str, dict[str, Any]]:
    """Per acquisition shift (``kinds[i]`` is item i's): the set's own metrics
    (``scoring.point_metrics``) on that shift's images, with their number."""
    import numpy as np

    from medvault.training import scoring
    from medvault.training.shifts import KINDS

    scored = scoring.build(items, outcomes, labels, normal_label)
    of = np.array(kinds)
    out: dict[str, dict[str, Any]] = {}
    for kind in KINDS:
        idx = np.flatnonzero(of == kind)
        point = scoring.point_metrics(scored, idx)
        out[kind] = {"n": int(idx.size)}
        for key in ("missed_abnormal", "accuracy", "indeterminate_share"):
            value = point[key]
            out[kind][key] = None if value is None else round(value, 4)
    return out
