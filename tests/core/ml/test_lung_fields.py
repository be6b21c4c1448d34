"""The lung-field input mask (``input.mask = "lung_fields"``): what it keeps, and that serving
applies it exactly as training did."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from medvault.core.ml import ModelError, analyse, load_model
from medvault.core.ml import preprocess as pp
from medvault.core.ml.lung_fields import keep_lung_fields, lung_field_hull, lung_mask


def _disk(shape, cy, cx, ry, rx):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0


def _phantom():
    """A 128 x 128 lung-window slice: bright body, two dark lungs, a nodule inside the left
    lung, and a mass on the right lung's mediastinal side that bites into it."""
    s = (128, 128)
    img = np.zeros(s, np.uint8)
    img[_disk(s, 64, 64, 44, 58)] = 180                     # body, mediastinum, chest wall
    right, left = _disk(s, 64, 38, 30, 18), _disk(s, 64, 90, 30, 18)
    img[right | left] = 40                                   # lungs
    img[_disk(s, 60, 92, 4, 4)] = 180                        # nodule surrounded by lung
    mass = _disk(s, 64, 54, 9, 9)                            # centred on the right lung's edge
    img[mass] = 180
    return img, right, left, mass


def test_lung_mask_keeps_lungs_and_nodules_drops_mediastinum_and_wall():
    img, right, left, _ = _phantom()
    m = lung_mask(img)
    assert m[64, 90] and m[60, 92], "left lung and the nodule inside it"
    assert m[64, 30], "right lung"
    assert not m[64, 64], "mediastinum between the lungs"
    assert not m[64, 10] and not m[15, 64], "chest wall and outside the body"
    assert m[left].mean() > 0.99


def test_hull_keeps_a_mass_that_indents_a_lung():
    img, _, _, mass = _phantom()
    assert not lung_mask(img)[64, 54], "the bite is not lung in the plain mask"
    hull = lung_field_hull(img)
    bite = mass & (np.arange(128)[None, :] <= 54)
    assert hull[bite].mean() > 0.9
    assert not hull[64, 64]


def test_keep_lung_fields_blacks_out_the_rest_and_leaves_lungs_untouched():
    img, right, left, _ = _phantom()
    out = keep_lung_fields(img)
    hull = lung_field_hull(img)
    assert np.array_equal(out[hull], img[hull])
    assert (out[~hull] == 0).all()
    assert out[64, 64] == 0 and out[64, 90] == 40
    flat = np.full((64, 64), 90, np.uint8)
    assert np.array_equal(keep_lung_fields(flat), flat), "no lung found: the slice as it is"


def test_apply_mask_names():
    sq = _phantom()[0]
    assert pp.apply_mask(sq, "") is sq
    with pytest.raises(ValueError, match="unknown input mask"):
        pp.apply_mask(sq, "brain")


def _with_mask(models_dir: Path, mask: str) -> Path:
    card = json.loads((models_dir / "lung-ct.json").read_text())
    card["input"]["mask"] = mask
    (models_dir / "lung-ct.json").write_text(json.dumps(card))
    return models_dir


def test_serving_applies_the_cards_mask(shared_data, models_copy, lung):
    from medvault.training.data import load_uint8

    path = next(iter(sorted((shared_data / "chest_ct" / "train" / "adenocarcinoma").glob("*"))))
    img = load_uint8(path)
    masked_model = load_model("lung-ct", _with_mask(models_copy, "lung_fields"))
    assert masked_model.input_mask == "lung_fields" and lung.input_mask == ""
    got = analyse(masked_model, img)
    assert not got.refused, got.reason
    square = pp.apply_mask(pp.prepare_gray(img, masked_model.input_size)[0], "lung_fields")
    (want,) = masked_model.session.run(["probabilities"], {"image": pp.to_input(square)})
    assert np.allclose([got.probabilities[k] for k in masked_model.labels], want[0], atol=1e-5)
    plain = analyse(lung, img)
    assert not np.allclose(list(plain.probabilities.values()), list(got.probabilities.values()),
                           atol=1e-3), "the mask changed what the model saw"


def test_unknown_mask_in_a_card_is_refused_at_load(models_copy):
    with pytest.raises(ModelError, match="unknown input mask"):
        load_model("lung-ct", _with_mask(models_copy, "heart"))

