"""Fit a model's call rule on internal data only (``medvault fit-call NAME``).

- near-OOD statistics: class means + shared-covariance precision of the embedding over the
  **training** split (the split ``medvault train`` made, grouped by duplicates);
- the near-OOD distance threshold: the 99th percentile of that distance over the internal
  **validation** split (declared before looking at any external image);
- intensity profiles (``medvault.core.ml.call.intensity_profile``: a 32-bin grey-level histogram
  of the model-input square before any mask) of the **training** split, and the threshold on
  the mean distance to the 5 nearest of them: the 99th percentile over the **validation** split.
  The design (profile, k, percentile) was fixed on the internal split and its shifted rendering
  (``medvault evaluate --shifted``) before any external image was scored with it;
- ``t98``: the largest threshold on P(abnormal) that keeps sensitivity >= 0.98 on the internal
  validation abnormals. ``normal_below`` = min(t98, 0.5): never "normal" when abnormal is at
  least as likely as not (sensitivity is then >= 0.98 a fortiori); ``abnormal_at`` =
  max(t98, 0.5): a confident abnormal. In between: indeterminate. (With label smoothing the
  models put most abnormals above 0.85, so t98 sits far above 0.5 and the band is real.)

``../shared/data/external`` is never read here.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from medvault.core.ml import preprocess as pp
from medvault.core.ml.call import (
    NORMAL_LABEL,
    IntensityRule,
    file_sha256,
    fit_mahalanobis,
    intensity_profile,
    mahalanobis,
    threshold_for_sensitivity,
)
from medvault.training.data import DATASETS, Prepared, default_data_dir, load_uint8, prepare

TARGET_SENSITIVITY = 0.98
OOD_PERCENTILE = 99.0
SHRINKAGE = 0.1
INTENSITY_BINS = 32
INTENSITY_K = 5
NORMAL_CAP = 0.5


def internal_split(name: str, data_dir: Path | None = None, cache_dir: Path | None = None) -> tuple[Path, Prepared]:
    """(folder, Prepared) of the split ``medvault train`` uses (same seed, same grouping)."""
    data_dir = Path(data_dir or default_data_dir())
    return data_dir / DATASETS[name]["folder"], prepare(name, data_dir, cache_dir)


def run_files(session, paths: list[Path], size: int, outputs: tuple[str, ...],  # type: ignore[no-untyped-def]
              batch: int = 64, mask: str = "") -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Serving preprocessing -> ({output name: N x ...}, N x bins intensity profiles) for image
    files; the profiles are taken before the input mask, as serving does."""
    runs: list[list[np.ndarray]] = [[] for _ in outputs]
    profiles: list[np.ndarray] = []
    for start in range(0, len(paths), batch):
        squares = [pp.prepare_gray(load_uint8(p), size)[0] for p in paths[start:start + batch]]
        profiles.extend(intensity_profile(sq, INTENSITY_BINS) for sq in squares)
        x = np.stack([pp.apply_mask(sq, mask) for sq in squares])
        for run, value in zip(runs, session.run(list(outputs), {"image": (x.astype(np.float32) / 255.0)[:, None]}),
                              strict=True):
            run.append(value)
    return {name: np.concatenate(run) for name, run in zip(outputs, runs, strict=True)}, np.stack(profiles)


def fit_call(name: str, models_dir: Path, data_dir: Path | None = None,
             cache_dir: Path | None = None, threads: int = 1,
             progress: Callable[[dict[str, Any]], None] = lambda m: None) -> dict[str, Any]:
    from medvault.training.export import ort_session

    models_dir = Path(models_dir)
    card_path = models_dir / f"{name}.json"
    card = json.loads(card_path.read_text())
    size = int(card["input"]["shape"][-1])
    labels = list(card["labels"])
    normal_label = NORMAL_LABEL[name]
    normal_idx = labels.index(normal_label)
    folder, prep = internal_split(name, data_dir, cache_dir)
    session = ort_session(models_dir / card["file"], threads)
    paths = [folder / p for p in prep.paths]
    out, profiles = run_files(session, paths, size, ("probabilities", "embedding"),
                              mask=str(card["input"].get("mask", "") or ""))
    probs, emb = out["probabilities"], out["embedding"]
    progress({"event": "embedded", "images": len(paths)})
    train = prep.split == "train"
    val = prep.split == "val"
    means, precision = fit_mahalanobis(emb[train], prep.y[train], len(labels), SHRINKAGE)
    dist = mahalanobis(emb.astype(np.float64), means, precision)
    ood_threshold = float(np.percentile(dist[val], OOD_PERCENTILE))
    intensity = IntensityRule(train=profiles[train].astype(np.float32), k=INTENSITY_K,
                              threshold=0.0)
    intensity_threshold = float(np.percentile(intensity.distances(profiles[val]), OOD_PERCENTILE))
    intensity_file = f"{name}-intensity.npz"
    np.savez(models_dir / intensity_file, train=intensity.train)
    p_abn = 1.0 - probs[:, normal_idx]
    val_abn = val & (prep.y != normal_idx)
    t98 = threshold_for_sensitivity(p_abn[val_abn], TARGET_SENSITIVITY)
    normal_below = min(t98, NORMAL_CAP)
    abnormal_at = max(t98, NORMAL_CAP)
    ood_file = f"{name}-ood.npz"
    np.savez(models_dir / ood_file, means=means.astype(np.float32),
             precision=precision.astype(np.float32))
    val_nor = val & (prep.y == normal_idx)
    card["call"] = {
        "values": ["abnormal", "normal", "indeterminate"],
        "normal_label": normal_label,
        "abnormal_labels": [lab for lab in labels if lab != normal_label],
        "sensitivity_threshold_t98": round(t98, 6),
        "normal_below": round(normal_below, 6),
        "abnormal_at": round(abnormal_at, 6),
        "rule": "p_abnormal = 1 - P(normal label). 'indeterminate' (outside validated "
                "conditions) when the intensity distance is above intensity.threshold or the "
                "near-OOD distance is above ood.threshold; else 'normal' "
                "when p_abnormal < normal_below; 'abnormal' when p_abnormal >= abnormal_at; "
                "'indeterminate' (a tumour cannot be excluded; needs a radiologist's read) in "
                "between. Refused images get no call (refused: true).",
        "chosen_on": "the internal validation split (grouped by duplicates) only; "
                     "../shared/data/external was never used to train, select, early-stop, "
                     "choose a threshold or calibrate",
        "target_sensitivity": TARGET_SENSITIVITY,
        "validation_abnormal_n": int(val_abn.sum()),
        "validation_normal_n": int(val_nor.sum()),
        "validation_abnormal_below_normal_threshold": int((p_abn[val_abn] < normal_below).sum()),
        "validation_normal_below_normal_threshold": int((p_abn[val_nor] < normal_below).sum()),
        "threshold_rule": f"t98 = largest t with sensitivity >= {TARGET_SENSITIVITY} on the "
                          f"internal validation abnormals; normal_below = min(t98, {NORMAL_CAP}); "
                          f"abnormal_at = max(t98, {NORMAL_CAP})",
        "ood": {
            "method": "class-conditional Mahalanobis distance (shared covariance shrunk "
                      f"{SHRINKAGE} towards its mean diagonal) on the L2-normalised embedding; "
                      "the smallest distance to any class mean",
            "file": ood_file,
            "sha256": file_sha256(models_dir / ood_file),
            "fitted_on": f"training split embeddings ({int(train.sum())} images)",
            "threshold": round(ood_threshold, 4),
            "threshold_rule": f"{OOD_PERCENTILE:g}th percentile of the distance on the internal "
                              f"validation split ({int(val.sum())} images)",
        },
        "intensity": {
            "method": f"the image's intensity profile (square root of the normalised "
                      f"{INTENSITY_BINS}-bin grey-level histogram of the model-input square "
                      "before any mask, values 0-4 left out); the mean Euclidean distance to "
                      f"its {INTENSITY_K} nearest training profiles",
            "file": intensity_file,
            "sha256": file_sha256(models_dir / intensity_file),
            "k": INTENSITY_K,
            "bins": INTENSITY_BINS,
            "fitted_on": f"training split profiles ({int(train.sum())} images)",
            "threshold": round(intensity_threshold, 4),
            "threshold_rule": f"{OOD_PERCENTILE:g}th percentile of the distance on the internal "
                              f"validation split ({int(val.sum())} images)",
        },
        "note": "The thresholds were chosen on the same validation split the internal figures "
                "are reported on, so in-distribution miss and indeterminate rates there are "
                "optimistic by construction; the external figures are not.",
    }
    card_path.write_text(json.dumps(card, indent=1) + "\n")
    progress({"event": "call-fitted", "normal_below": card["call"]["normal_below"],
              "abnormal_at": card["call"]["abnormal_at"], "ood_threshold": ood_threshold,
              "intensity_threshold": intensity_threshold})
    call: dict[str, Any] = card["call"]
    return call
