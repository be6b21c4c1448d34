"""The acquisition shifts behind `medvault evaluate --shifted`: deterministic, each really
changes the image the way its name says, and the command scores the shifted internal split
image by image as `predict` would score the shifted image."""

from __future__ import annotations

import json
from io import StringIO
from pathlib import Path

import numpy as np
import pytest
from django.core.management import call_command

from medvault.training import shifts

MODELS = Path(__file__).resolve().parents[2] / "models"


def _phantom() -> np.ndarray:
    y, x = np.mgrid[0:96, 0:96]
    img = np.where((x - 48) ** 2 + (y - 48) ** 2 < 40**2, 120, 10).astype(np.float32)
    img[30:40, 30:70] = 230  # a bright bar with sharp edges
    return img.astype(np.uint8)


@pytest.mark.parametrize("kind", shifts.KINDS)
def test_each_shift_is_deterministic_and_changes_the_image(kind):
    img = _phantom()
    a, b = shifts.shift(img, kind, 3), shifts.shift(img, kind, 3)
    assert a.dtype == np.uint8 and a.shape == img.shape
    assert np.array_equal(a, b)
    assert not np.array_equal(a, img)


def test_shifts_do_what_their_names_say():
    img = _phantom()
    mean = float(img.mean())
    assert shifts.shift(img, "gamma_dark", 0).mean() < mean < shifts.shift(img, "gamma_bright", 0).mean()
    window = shifts.shift(img, "soft_tissue_window", 0)
    assert window[48, 48] == 0 and window[35, 50] == 255  # 120/255 is below the window, 230 above
    edge = np.abs(np.diff(img.astype(int), axis=0)).max()
    assert np.abs(np.diff(shifts.shift(img, "blur", 0).astype(int), axis=0)).max() < edge
    assert np.abs(np.diff(shifts.shift(img, "downsampled", 0).astype(int), axis=0)).max() < edge
    noisy = shifts.shift(img, "noise", 0).astype(int) - img
    assert 5 < noisy[img == 120].std() < 15
    assert not np.array_equal(shifts.shift(img, "noise", 0), shifts.shift(img, "noise", 1))
    rgb = np.repeat(img[..., None], 3, axis=2)
    assert np.array_equal(shifts.shift(rgb, "gamma_dark", 0), shifts.shift(img, "gamma_dark", 0))
    with pytest.raises(ValueError, match="unknown shift"):
        shifts.shift(img, "sepia", 0)


def test_kinds_take_equal_turns():
    turns = [shifts.kind_for(i) for i in range(len(shifts.KINDS) * 3)]
    assert {k: turns.count(k) for k in shifts.KINDS} == dict.fromkeys(shifts.KINDS, 3)


def test_evaluate_shifted_scores_the_shifted_images(shared_data, tmp_path, monkeypatch):
    """`--shifted` scores the internal split with one shift per image: a few images re-scored
    through `predict` after the same shift give the same answers as the command's table."""
    from medvault.analysis.management.commands import evaluate as evaluate_command

    picks = sorted((shared_data / "chest_ct/train/adenocarcinoma").glob("*.png"))[:3] + \
        sorted((shared_data / "chest_ct/train/normal").glob("*.png"))[:3]
    from medvault.training import scoring

    items = [scoring.Item(p, p.parent.name, p.name) for p in picks]
    monkeypatch.setattr(evaluate_command.Command, "_internal_items", lambda self, name, data: items)
    out = StringIO()
    call_command("evaluate", "--model", "lung-ct", "--models-dir", str(MODELS), "--shifted",
                 "--resamples", "0", stdout=out)
    rep = json.loads(out.getvalue().strip().splitlines()[-1])["sets"]["internal-shifted"]
    assert set(rep["by_shift"]) == set(shifts.KINDS)
    assert sum(row["n"] for row in rep["by_shift"].values()) == len(items)

    from medvault.analysis.management.commands.predict import read_input
    from medvault.core.ml import analyse, load_model

    model = load_model("lung-ct", MODELS)
    answers = [analyse(model, shifts.shift(read_input(p), shifts.kind_for(i), i)) for i, p in enumerate(picks)]
    expect = [[sum(1 for p, a in zip(picks, answers, strict=True)
                   if p.parent.name == row and not a.refused and a.label == col)
               for col in rep["confusion_columns"][:-1]]
              + [sum(1 for p, a in zip(picks, answers, strict=True) if p.parent.name == row and a.refused)]
              for row in rep["rows"]]
    assert rep["confusion"] == expect
    # the unshifted images are scored differently somewhere, or the shift did nothing
    plain = [analyse(model, read_input(p)) for p in picks]
    assert [a.probabilities for a in plain] != [a.probabilities for a in answers]
