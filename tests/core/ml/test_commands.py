"""`medvault predict` and `medvault train` (management commands owned by the ML helper)."""

from __future__ import annotations

import json
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

MODELS = Path(__file__).resolve().parents[3] / "models"


def _predict(*args: str) -> list[dict]:
    out = StringIO()
    call_command("predict", *args, stdout=out)
    return [json.loads(line) for line in out.getvalue().splitlines() if line.strip()]


def test_predict_prints_one_json_line_per_file(shared_data, tmp_path):
    garbage = tmp_path / "notes.txt"
    garbage.write_text("not an image")
    files = [
        shared_data / "brain_mri/train/glioma/Tr_glTr_0003.jpg",
        shared_data / "chest_ct/train/adenocarcinoma/000000_6.png",
        shared_data / "dicom/tcia/PROSTATE-MRI_MR.dcm",
        garbage,
    ]
    lines = _predict("--model", "brain-mri", "--models-dir", str(MODELS), *map(str, files))
    assert [rec["path"] for rec in lines] == [str(f) for f in files]
    for rec in lines:
        assert {"path", "label", "probabilities", "refused", "reason", "latency_ms"} <= set(rec)
    glioma, chest, prostate, junk = lines
    assert glioma["label"] == "glioma" and not glioma["refused"]
    assert glioma["tumour_detected"] is True
    assert abs(sum(glioma["probabilities"].values()) - 1) < 1e-4
    assert chest["refused"] and chest["label"] is None
    assert prostate["refused"] and "BodyPartExamined" in prostate["reason"]
    assert junk["refused"] and junk["reason"].startswith("error")


def test_predict_with_missing_models_is_a_clear_error(tmp_path):
    with pytest.raises(CommandError, match="not found"):
        _predict("--model", "lung-ct", "--models-dir", str(tmp_path), "x.png")


@pytest.mark.slow
def test_train_command_smoke(shared_data, tmp_path):
    pytest.importorskip("torch", reason="training needs the [train] extra (torch)")
    out = StringIO()
    call_command("train", "lung-ct", "--smoke", "--epochs", "1", "--threads", "1",
                 "--out", str(tmp_path / "models"), "--work", str(tmp_path / "work"),
                 "--data", str(shared_data), stdout=out)
    events = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [e["event"] for e in events][0] == "data"
    assert any(e["event"] == "exported" and e["parity"] <= 1e-4 for e in events)
    assert (tmp_path / "models" / "lung-ct-smoke.onnx").is_file()
