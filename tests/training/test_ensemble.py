"""The ensemble graph (medvault.training.ensemble) serves what its members would, averaged."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="training needs the [train] extra (torch)")

from medvault.training.ensemble import build_ensemble, save  # noqa: E402
from medvault.training.evaluate import softmax  # noqa: E402
from medvault.training.export import OUTPUT_NAMES, export_onnx, ort_session  # noqa: E402
from medvault.training.nets import CompactNet, ExportWrapper  # noqa: E402

SIZE = 64


@pytest.fixture(scope="module")
def members(tmp_path_factory):
    folder = tmp_path_factory.mktemp("members")
    paths = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        net = CompactNet(4, widths=(8, 16, 16, 32), embed_dim=16).eval()
        path = folder / f"m{seed}.onnx"
        export_onnx(ExportWrapper(net, 1.3 * seed), SIZE, path, OUTPUT_NAMES)
        paths.append(path)
    return paths


def _run(path, x):
    return dict(zip(OUTPUT_NAMES, ort_session(path).run(OUTPUT_NAMES, {"image": x}), strict=True))


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(0)
    # asymmetric images: a bright blob on the left, so that a missing or wrong mirror shows
    x = rng.random((3, 1, SIZE, SIZE), dtype=np.float32) * 0.2
    x[:, :, 20:40, 4:20] += 0.7
    return x


def test_flip_ensemble_averages_every_member_over_the_slice_and_its_mirror(members, images, tmp_path):
    path = tmp_path / "ens.onnx"
    save(build_ensemble(members, tta_flip=True, temperature=0.8), path)
    got = _run(path, images)
    mirror = images[..., ::-1].copy()
    per = [(_run(m, images), _run(m, mirror)) for m in members]
    logits = np.mean([o["logits"] for pair in per for o in pair], axis=0)
    cam = np.mean([v for a, b in per for v in (a["cam"], b["cam"][..., ::-1])], axis=0)
    np.testing.assert_allclose(got["logits"], logits, atol=1e-5)
    np.testing.assert_allclose(got["probabilities"], softmax(logits, 0.8), atol=1e-5)
    np.testing.assert_allclose(got["cam"], cam, atol=1e-4)
    # the retrieval embedding is the first member's, on the slice itself
    np.testing.assert_allclose(got["embedding"], per[0][0]["embedding"], atol=1e-6)
    assert got["cam"].shape == per[0][0]["cam"].shape
    # the mirror changes the answer on these asymmetric images: the test can fail
    assert np.abs(per[0][0]["logits"] - per[0][1]["logits"]).max() > 1e-3


def test_one_member_without_flip_is_that_member_at_the_new_temperature(members, images, tmp_path):
    path = tmp_path / "one.onnx"
    save(build_ensemble(members[:1], tta_flip=False, temperature=2.0), path)
    got, alone = _run(path, images[:1]), _run(members[0], images[:1])
    np.testing.assert_allclose(got["logits"], alone["logits"], atol=1e-6)
    np.testing.assert_allclose(got["cam"], alone["cam"], atol=1e-6)
    np.testing.assert_allclose(got["probabilities"], softmax(alone["logits"], 2.0), atol=1e-6)


def test_members_with_different_classes_are_refused(members, tmp_path):
    torch.manual_seed(3)
    other = tmp_path / "three.onnx"
    export_onnx(ExportWrapper(CompactNet(3, widths=(8, 16, 16, 32), embed_dim=16).eval(), 1.0),
                SIZE, other, OUTPUT_NAMES)
    with pytest.raises(ValueError, match="classes"):
        build_ensemble([members[0], other], tta_flip=False, temperature=1.0)


def test_ensemble_command_refuses_a_member_without_its_card_and_its_own_folder(members, tmp_path):
    from django.core.management import CommandError, call_command

    with pytest.raises(CommandError, match="card"):
        call_command("ensemble", "brain-mri", "--members", str(members[0]), "--out", str(tmp_path))
    (members[0].with_suffix(".json")).write_text("{}")
    try:
        with pytest.raises(CommandError, match="member's folder"):
            call_command("ensemble", "brain-mri", "--members", str(members[0]),
                         "--out", str(members[0].parent))
    finally:
        members[0].with_suffix(".json").unlink()


def test_ensemble_command_builds_a_served_model_whose_card_agrees_with_its_graph(shared_data, tmp_path):
    """``medvault ensemble`` end to end on the shipped lung-ct weights (as both members, over
    the slice and its mirror): the card's SHA-256, members and validation figures describe
    the graph it wrote, and the folder serves through analyse() with a refitted call rule."""
    import json
    import shutil
    from pathlib import Path

    from django.core.management import call_command

    from medvault.core.ml import analyse, load_model
    from medvault.core.ml.call import file_sha256
    from medvault.training.data import load_uint8
    from medvault.training.ensemble import _validation_logits

    shipped = Path(__file__).resolve().parents[2] / "models"
    first, other = tmp_path / "member-a", tmp_path / "member-b"
    for folder in (first, other):
        folder.mkdir()
        for f in ("lung-ct.onnx", "lung-ct.json", "domain.onnx", "domain.json"):
            shutil.copy(shipped / f, folder / f)
    # a first member whose card asks serving to flip-average its heat-map (as brain-mri's
    # does): the graph already averages the mirror view, so the ensemble's card must not
    first_card = json.loads((first / "lung-ct.json").read_text())
    first_card["outputs"]["cam_flip_average"] = True
    (first / "lung-ct.json").write_text(json.dumps(first_card))
    out = tmp_path / "ens"
    call_command("ensemble", "lung-ct", "--members", str(first / "lung-ct.onnx"),
                 str(other / "lung-ct.onnx"), "--tta-flip", "--out", str(out),
                 "--data", str(shared_data), "--threads", "2")
    card = json.loads((out / "lung-ct.json").read_text())
    single = json.loads((shipped / "lung-ct.json").read_text())
    assert card["sha256"] == file_sha256(out / "lung-ct.onnx")
    assert [m["sha256"] for m in card["architecture"]["members"]] == [single["sha256"]] * 2
    assert card["architecture"]["views"] == ["slice", "left-right mirror"]
    assert "--tta-flip" in card["training"]["command"] and card["call"]["ood"]["threshold"] > 0
    logits, y, _ = _validation_logits(out / "lung-ct.onnx", "lung-ct", shared_data, 2)
    probs = softmax(logits, card["outputs"]["temperature"])
    assert card["validation"]["calibrated"]["accuracy"] == round(float((probs.argmax(1) == y).mean()), 4)
    assert card["validation"]["calibrated"]["n"] == len(y)
    # served like any model; the embedding is the first member's, so retrieval keeps working
    model, alone = load_model("lung-ct", out), load_model("lung-ct", shipped)
    assert "cam_flip_average" not in card["outputs"] and not model.cam_flip
    image = load_uint8(next((shared_data / "chest_ct" / "valid" / "adenocarcinoma").iterdir()))
    got, ref = analyse(model, image), analyse(alone, image)
    assert got.call in ("abnormal", "normal", "indeterminate") and not got.refused
    assert got.heatmap.shape == image.shape[:2]
    np.testing.assert_allclose(got.embedding, ref.embedding, atol=1e-5)
