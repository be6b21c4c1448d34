"""`medvault evaluate`: known confusion tables on small fixtures, class mappings, bootstrap by
patient, and the model cards agreeing with what the command prints."""

from __future__ import annotations

import csv
import json
import shutil
from io import StringIO
from pathlib import Path

import numpy as np
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from PIL import Image

from medvault.training import scoring

MODELS = Path(__file__).resolve().parents[2] / "models"
LUNG = ["adenocarcinoma", "large_cell_carcinoma", "squamous_cell_carcinoma", "normal"]


def _fixture_set(root: Path, spec: dict[str, int]) -> Path:
    for cls, n in spec.items():
        (root / cls).mkdir(parents=True)
        for i in range(n):
            Image.fromarray(np.full((16, 16), i, np.uint8)).save(root / cls / f"{cls}_{i}.png")
    return root


def _p(label: str, conf: float = 0.9) -> dict[str, float]:
    rest = (1 - conf) / (len(LUNG) - 1)
    return {lab: (conf if lab == label else rest) for lab in LUNG}


def test_known_confusion_table_and_metrics(tmp_path):
    root = _fixture_set(tmp_path / "set", {"adenocarcinoma": 3, "malignant": 2, "normal": 3,
                                           "benign": 1})
    items = scoring.collect(root)
    said = {  # what a fake model answers per file: (label, p of that label, refused, call)
        "adenocarcinoma_0": ("adenocarcinoma", 0.9, False, "abnormal"),
        "adenocarcinoma_1": ("squamous_cell_carcinoma", 0.9, False, "abnormal"),
        "adenocarcinoma_2": ("normal", 0.8, False, "normal"),  # a miss
        "malignant_0": ("large_cell_carcinoma", 0.6, False, "indeterminate"),
        "malignant_1": (None, 0, True, None),  # refused
        "normal_0": ("normal", 0.95, False, "normal"),
        "normal_1": ("normal", 0.7, False, "normal"),
        "normal_2": ("adenocarcinoma", 0.7, False, "abnormal"),
        "benign_0": ("normal", 0.9, False, "normal"),
    }

    def predict(path: Path) -> scoring.Outcome:
        label, conf, refused, call = said[path.stem]
        return scoring.Outcome(label, {} if refused else _p(label, conf), refused, call)

    rep, _ = scoring.run_set(items, predict, LUNG, "normal", resamples=200)
    assert rep["rows"] == ["adenocarcinoma", "normal", "benign", "malignant"]
    assert rep["confusion_columns"] == LUNG + ["refused"]
    assert rep["confusion"] == [
        [1, 0, 1, 1, 0],  # adenocarcinoma
        [1, 0, 0, 2, 0],  # normal
        [0, 0, 0, 1, 0],  # benign: reported only
        [0, 1, 0, 0, 1],  # malignant
    ]
    assert rep["calls"] == [[2, 1, 0, 0], [1, 2, 0, 0], [0, 1, 0, 0], [0, 0, 1, 1]]
    m = rep["metrics"]
    assert m["accuracy"] == round(3 / 6, 4)  # exact labels answered: ad x3, normal x3
    assert m["sensitivity"] == 0.75  # answered abnormals: 3 of 4 predicted a cancer class
    assert m["specificity"] == round(2 / 3, 4)
    assert m["missed_abnormal"] == 0.2  # 1 of 5 abnormals called normal (refused counted)
    assert m["refused_share"] == round(1 / 9, 4)
    assert m["indeterminate_share"] == 0.125  # benign left out: 1 of 8
    assert m["recall_adenocarcinoma"] == round(1 / 3, 4) and m["recall_normal"] == round(2 / 3, 4)
    assert 0 <= m["auroc"] <= 1 and m["ece"] is not None
    for key, (lo, hi) in rep["ci95"].items():
        assert lo <= m[key] + 1e-9 and m[key] <= hi + 1e-9 or key == "ece", key
    assert rep["counts"] == {"abnormal": 5, "normal": 3, "other": 1}


def test_glioma_only_set_scores_detection_and_recall(tmp_path):
    labels = ["glioma", "meningioma", "pituitary", "notumor"]
    items = scoring.collect(_fixture_set(tmp_path / "g", {"glioma": 4}))
    answers = iter(["glioma", "notumor", "meningioma", "glioma"])

    def predict(path: Path) -> scoring.Outcome:
        lab = next(answers)
        probs = {x: (0.85 if x == lab else 0.05) for x in labels}
        return scoring.Outcome(lab, probs, False, "normal" if lab == "notumor" else "abnormal")

    rep, _ = scoring.run_set(items, predict, labels, "notumor", resamples=0)
    m = rep["metrics"]
    assert m["sensitivity"] == 0.75 and m["recall_glioma"] == 0.5 and m["missed_abnormal"] == 0.25
    assert m["specificity"] is None and m["auroc"] is None


def test_unknown_class_folder_is_a_clear_error(tmp_path):
    items = scoring.collect(_fixture_set(tmp_path / "x", {"cats": 1}))
    with pytest.raises(ValueError, match="cats"):
        scoring.run_set(items, lambda p: scoring.Outcome("normal", _p("normal"), False, "normal"),
                        LUNG, "normal", 0)


def test_bootstrap_clusters_are_patients_from_the_manifest(tmp_path):
    root = _fixture_set(tmp_path / "tcga", {"glioma": 6})
    with open(root / "manifest.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "class", "source_path"])
        for i in range(6):
            w.writerow([f"glioma/glioma_{i}.png", "glioma", f"kaggle_3m/PATIENT_{i // 3}/s{i}.tif"])
    items = scoring.collect(root)
    assert sorted({it.cluster for it in items}) == ["kaggle_3m/PATIENT_0", "kaggle_3m/PATIENT_1"]


def test_evaluate_command_end_to_end_on_real_images(shared_data, tmp_path):
    """Real chest CT slices through the real model: the table matches `medvault predict`."""
    root = tmp_path / "mini"
    picks = {"adenocarcinoma": ["000009_7.png", "000018_5.png"], "normal": ["18.png"]}
    for cls, names in picks.items():
        (root / cls).mkdir(parents=True)
        for n in names:
            shutil.copy(shared_data / "chest_ct/train" / cls / n, root / cls / n)
    (root / "malignant").mkdir()
    shutil.copy(shared_data / "brain_mri/train/glioma/Tr_glTr_0003.jpg", root / "malignant/x.jpg")
    out = StringIO()
    call_command("evaluate", "--model", "lung-ct", "--models-dir", str(MODELS),
                 "--resamples", "50", str(root), stdout=out)
    text = out.getvalue().strip().splitlines()
    report = json.loads(text[-1])
    rep = report["sets"]["mini"]
    assert "confusion (rows true, columns predicted)" in out.getvalue()
    pred = StringIO()
    files = sorted(p for p in root.rglob("*") if p.is_file())
    call_command("predict", "--model", "lung-ct", "--models-dir", str(MODELS), *map(str, files),
                 stdout=pred)
    lines = {Path(r["path"]).relative_to(root).parts[0] + "/" + Path(r["path"]).name: r
             for r in map(json.loads, pred.getvalue().splitlines())}
    for row_name, row, calls in zip(rep["rows"], rep["confusion"], rep["calls"], strict=True):
        said = [r for k, r in lines.items() if k.startswith(row_name + "/")]
        expect = [sum(1 for r in said if not r["refused"] and r["label"] == lab)
                  for lab in rep["confusion_columns"][:-1]] + [sum(r["refused"] for r in said)]
        assert row == expect
        assert calls == [sum(1 for r in said if (r["call"] or "refused") == c)
                         for c in rep["call_columns"]]
    assert rep["calls"][rep["rows"].index("malignant")] == [0, 0, 0, 1]  # a brain MRI: refused


def test_evaluate_needs_a_set():
    with pytest.raises(CommandError, match="DIR"):
        call_command("evaluate", "--model", "lung-ct", "--models-dir", str(MODELS))


@pytest.mark.parametrize("name", ["lung-ct", pytest.param("brain-mri", marks=pytest.mark.slow)])
def test_cards_agree_with_evaluate(shared_data, name):
    """The internal figures on the card are what `medvault evaluate --internal` prints now,
    and agree with the training-time validation figures."""
    card = json.loads((MODELS / f"{name}.json").read_text())
    stored = card["evaluation"]["internal"]["sets"]["internal-validation"]
    out = StringIO()
    lesions = "internal-synthetic-lesions" in card["evaluation"]["internal"]["sets"]
    call_command("evaluate", "--model", name, "--models-dir", str(MODELS), "--internal", "--shifted",
                 *(["--synthetic-lesions"] if lesions else []),
                 "--resamples", "0", "--data", str(shared_data), stdout=out)
    printed = json.loads(out.getvalue().strip().splitlines()[-1])["sets"]
    now = printed["internal-validation"]
    assert now["metrics"] == stored["metrics"]
    assert now["confusion"] == stored["confusion"] and now["calls"] == stored["calls"]
    # the acquisition-shifted split on the card is what --shifted prints now, shift by shift
    shifted = card["evaluation"]["internal"]["sets"]["internal-shifted"]
    assert printed["internal-shifted"]["metrics"] == shifted["metrics"]
    assert printed["internal-shifted"]["by_shift"] == shifted["by_shift"]
    assert "--shifted" in card["evaluation"]["internal"]["command"]
    if lesions:  # the painted lesions on the card are what --synthetic-lesions prints now
        stored_lesions = card["evaluation"]["internal"]["sets"]["internal-synthetic-lesions"]
        assert printed["internal-synthetic-lesions"]["metrics"] == stored_lesions["metrics"]
        assert printed["internal-synthetic-lesions"]["cam_peak_in_lesion"] == stored_lesions["cam_peak_in_lesion"]
        assert printed["internal-synthetic-lesions"]["n"] == card["data"]["per_class"]["notumor"]["val"]
    assert "| soft_tissue_window |" in (MODELS / f"{name}.md").read_text()
    # training-time figures (cached 128 px pixels, no domain gate) within 1 point
    assert abs(now["metrics"]["accuracy"] - card["validation"]["calibrated"]["accuracy"]) <= 0.01
    assert now["n"] == card["data"]["val"]
    assert card["evaluation"]["external"]["rule"].startswith("Never trained")
