"""Scoring a model on a folder of labelled images (``medvault evaluate``), numpy only.

A set is ``DIR/<class>/<image>``. Class folders are the model's labels plus the mappings of
``../shared/data/external/README.md``: ``malignant`` = any cancer class (abnormal, no subtype),
``benign`` = none of our classes (reported, never scored). A glioma-only set has no normals, so
it scores tumour detection and glioma recall; specificity and AUROC are then undefined (null).

Intervals are 95 % percentile bootstraps over clusters: patients where the set's
``manifest.csv`` names them (a ``patient`` column, or the folder of ``source_path`` when that
folder is finer than the class folders, as in TCGA-LGG), duplicate groups for the internal
split, single images otherwise.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from medvault.core.ml.call import REASON_OOD
from medvault.training.evaluate import auroc, ece

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".dcm", ".bmp", ".tif", ".tiff"}
CANCER_ANY = "malignant"
REPORT_ONLY = "benign"
BOOTSTRAP_RESAMPLES = 1000
BOOTSTRAP_SEED = 1337
CALL_COLUMNS = ("abnormal", "normal", "indeterminate", "refused")


@dataclass
class Item:
    path: Path
    truth: str  # the class folder name
    cluster: str


@dataclass
class Outcome:
    """What the model said about one item (label None when refused)."""

    label: str | None
    probabilities: dict[str, float]
    refused: bool
    call: str | None
    call_reason: str = ""


def _clusters_from_manifest(folder: Path, n_class_folders: int) -> dict[str, str]:
    manifest = folder / "manifest.csv"
    if not manifest.is_file():
        return {}
    with open(manifest, newline="") as fh:
        rows = list(csv.DictReader(fh))
    if not rows:
        return {}
    if "patient" in rows[0]:
        return {r["path"]: r["patient"] for r in rows if r.get("patient")}
    if "source_path" in rows[0]:
        parents = {r["path"]: str(PurePosixPath(r["source_path"]).parent) for r in rows}
        if len(set(parents.values())) > n_class_folders:
            return parents
    return {}


def collect(folder: Path) -> list[Item]:
    """Every image of ``folder/<class>/``, with its cluster (patient where known)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"{folder} is not a folder")
    class_dirs = sorted(p for p in folder.iterdir() if p.is_dir())
    if not class_dirs:
        raise ValueError(f"{folder} has no class folders (expected DIR/<class>/<image>)")
    clusters = _clusters_from_manifest(folder, len(class_dirs))
    items = []
    for cdir in class_dirs:
        for img in sorted(cdir.rglob("*")):
            if img.is_file() and img.suffix.lower() in IMAGE_SUFFIXES:
                rel = img.relative_to(folder).as_posix()
                items.append(Item(img, cdir.name, clusters.get(rel, rel)))
    if not items:
        raise ValueError(f"{folder} holds no images")
    return items


def truth_kind(truth: str, labels: Sequence[str], normal_label: str) -> str:
    """'abnormal' | 'normal' | 'other' (reported only)."""
    if truth == normal_label:
        return "normal"
    if truth in labels or truth == CANCER_ANY:
        return "abnormal"
    if truth == REPORT_ONLY:
        return "other"
    raise ValueError(f"class folder {truth!r} is not one of {', '.join(labels)}, "
                     f"{CANCER_ANY} or {REPORT_ONLY}")


@dataclass
class Scored:
    """Arrays over the items of one set."""

    labels: list[str]
    truths: list[str]
    kind: np.ndarray  # abnormal / normal / other
    exact: np.ndarray  # index of the true label, -1 when the folder is not one of our labels
    refused: np.ndarray
    pred: np.ndarray  # predicted label index, -1 when refused
    probs: np.ndarray  # N x C (nan when refused)
    p_abn: np.ndarray
    call: np.ndarray  # abnormal / normal / indeterminate / refused
    cluster: np.ndarray
    normal_idx: int
    outside: np.ndarray  # indeterminate because outside validated conditions (near-OOD)


def build(items: Sequence[Item], outcomes: Sequence[Outcome], labels: Sequence[str],
          normal_label: str) -> Scored:
    labels = list(labels)
    n, c = len(items), len(labels)
    probs = np.full((n, c), np.nan)
    pred = np.full(n, -1)
    for i, o in enumerate(outcomes):
        if not o.refused:
            probs[i] = [o.probabilities[lab] for lab in labels]
            pred[i] = labels.index(o.label) if o.label in labels else int(np.nanargmax(probs[i]))
    normal_idx = labels.index(normal_label)
    return Scored(
        labels=labels,
        truths=[it.truth for it in items],
        kind=np.array([truth_kind(it.truth, labels, normal_label) for it in items]),
        exact=np.array([labels.index(it.truth) if it.truth in labels else -1 for it in items]),
        refused=np.array([o.refused for o in outcomes], bool),
        pred=pred,
        probs=probs,
        p_abn=1.0 - probs[:, normal_idx],
        call=np.array(["refused" if o.refused else (o.call or "indeterminate")
                       for o in outcomes]),
        cluster=np.array([it.cluster for it in items]),
        normal_idx=normal_idx,
        outside=np.array([o.call == "indeterminate" and o.call_reason.startswith(REASON_OOD)
                          for o in outcomes], bool),
    )


def _mean(mask: np.ndarray) -> float | None:
    return float(mask.mean()) if mask.size else None


def point_metrics(s: Scored, idx: np.ndarray) -> dict[str, float | None]:
    """Every scalar metric on the items ``idx`` (a bootstrap resample repeats indices)."""
    kind, refused, call = s.kind[idx], s.refused[idx], s.call[idx]
    answered = ~refused
    exact, pred = s.exact[idx], s.pred[idx]
    ex = answered & (exact >= 0)
    abn, nor = kind == "abnormal", kind == "normal"
    pred_abn = pred != s.normal_idx
    out: dict[str, float | None] = {
        "accuracy": _mean(pred[ex] == exact[ex]),
        "sensitivity": _mean(pred_abn[answered & abn]),
        "specificity": _mean(~pred_abn[answered & nor]),
        "missed_abnormal": _mean(call[abn] == "normal"),
        "call_abnormal_on_abnormal": _mean(call[abn] == "abnormal"),
        "call_normal_on_normal": _mean(call[nor] == "normal"),
        "refused_share": _mean(refused),
        "indeterminate_share": _mean(call[kind != "other"] == "indeterminate"),
        "outside_validated_share": _mean(s.outside[idx][kind != "other"]),
    }
    scored = answered & (abn | nor)
    out["auroc"] = auroc(s.p_abn[idx][scored], abn[scored]) if scored.any() else None
    out["ece"] = ece(s.probs[idx][ex], exact[ex]) if ex.any() else None
    for k, lab in enumerate(s.labels):
        m = ex & (exact == k)
        out[f"recall_{lab}"] = _mean(pred[m] == k) if m.any() else None
    return out


def bootstrap(s: Scored, resamples: int = BOOTSTRAP_RESAMPLES,
              seed: int = BOOTSTRAP_SEED) -> dict[str, list[float] | None]:
    """95 % percentile intervals, resampling whole clusters with replacement."""
    uniq, inverse = np.unique(s.cluster, return_inverse=True)
    members = [np.flatnonzero(inverse == k) for k in range(len(uniq))]
    rng = np.random.default_rng(seed)
    draws: dict[str, list[float]] = {}
    for _ in range(resamples):
        pick = rng.integers(0, len(uniq), len(uniq))
        idx = np.concatenate([members[k] for k in pick])
        for key, v in point_metrics(s, idx).items():
            if v is not None:
                draws.setdefault(key, []).append(v)
    return {key: [round(float(np.percentile(v, 2.5)), 4), round(float(np.percentile(v, 97.5)), 4)]
            for key, v in draws.items()}


def tables(s: Scored) -> dict[str, Any]:
    rows = sorted(set(s.truths), key=lambda t: (s.labels.index(t) if t in s.labels else 99, t))
    cols = s.labels + ["refused"]
    truths = np.array(s.truths)
    confusion = []
    calls = []
    for t in rows:
        m = truths == t
        confusion.append([int(((s.pred == k) & m & ~s.refused).sum()) for k in range(len(s.labels))]
                         + [int((m & s.refused).sum())])
        calls.append([int((m & (s.call == c)).sum()) for c in CALL_COLUMNS])
    return {"rows": rows, "confusion_columns": cols, "confusion": confusion,
            "call_columns": list(CALL_COLUMNS), "calls": calls}


def score(s: Scored, resamples: int = BOOTSTRAP_RESAMPLES) -> dict[str, Any]:
    point = point_metrics(s, np.arange(len(s.kind)))
    ci = bootstrap(s, resamples) if resamples else {}
    return {
        "n": int(len(s.kind)),
        "clusters": int(len(np.unique(s.cluster))),
        "counts": {k: int((s.kind == k).sum()) for k in ("abnormal", "normal", "other")},
        "metrics": {k: (None if v is None else round(v, 4)) for k, v in point.items()},
        "ci95": {k: ci.get(k) for k in point if point[k] is not None},
        **tables(s),
    }


def format_report(name: str, rep: dict[str, Any]) -> str:
    """Human-readable table for one set."""
    w = max(len(r) for r in rep["rows"] + ["true \\ predicted"]) + 2
    lines = [f"== {name}: n={rep['n']} ({rep['clusters']} clusters for the intervals)", "",
             "confusion (rows true, columns predicted):",
             "true \\ predicted".ljust(w) + "".join(c[:12].rjust(13) for c in rep["confusion_columns"])]
    for r, row in zip(rep["rows"], rep["confusion"], strict=True):
        lines.append(r.ljust(w) + "".join(str(v).rjust(13) for v in row))
    lines += ["", "calls:", "true \\ call".ljust(w) + "".join(c.rjust(15) for c in rep["call_columns"])]
    for r, row in zip(rep["rows"], rep["calls"], strict=True):
        lines.append(r.ljust(w) + "".join(str(v).rjust(15) for v in row))
    lines.append("")
    for k, v in rep["metrics"].items():
        if v is None:
            lines.append(f"{k:28s} n/a")
        else:
            lo_hi = rep["ci95"].get(k)
            ci = f"  [{lo_hi[0]:.3f}, {lo_hi[1]:.3f}]" if lo_hi else ""
            lines.append(f"{k:28s} {v:.4f}{ci}")
    return "\n".join(lines)


def run_set(items: Sequence[Item], predict: Callable[[Path], Outcome], labels: Sequence[str],
            normal_label: str, resamples: int = BOOTSTRAP_RESAMPLES) -> tuple[dict[str, Any], list[Outcome]]:
    outcomes = [predict(it.path) for it in items]
    return score(build(items, outcomes, labels, normal_label), resamples), outcomes
