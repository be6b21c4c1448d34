"""Training pipeline: leakage-free splits on the real data, and a short smoke run through the
same code as `medvault train` (CI never retrains the shipped models)."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="training needs the [train] extra (torch)")

from medvault.training import data as tdata  # noqa: E402
from medvault.training.evaluate import (  # noqa: E402
    auroc,
    classification_report,
    ece,
    fit_temperature,
    retrieval_metrics,
    softmax,
)


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("mlcache")


def test_lung_split_has_no_duplicate_leakage_and_drops_label_conflict(shared_data, cache_dir):
    p = tdata.prepare("lung-ct", shared_data, cache_dir)
    train_groups = set(p.group[p.split == "train"].tolist())
    val_groups = set(p.group[p.split == "val"].tolist())
    assert not train_groups & val_groups
    # the known label conflict (same image as large-cell and squamous-cell) is gone
    assert "train/large_cell_carcinoma/l4.png" not in p.paths
    assert "train/squamous_cell_carcinoma/sq2.png" not in p.paths
    assert p.report["label_conflict_files_dropped"] >= 2
    # exact copies dropped: no two kept images share pixels
    flat = p.x.reshape(len(p.x), -1)
    assert len({row.tobytes() for row in flat}) == len(flat)
    # near-duplicates (cosine >= 0.999 on thumbnails) never straddle the split
    thumbs = np.stack([np.asarray(__import__("PIL").Image.fromarray(x).resize((16, 16)))
                       for x in p.x]).reshape(len(p.x), -1).astype(np.float32)
    pairs = tdata.near_duplicate_pairs(thumbs, 0.9995)
    assert all(p.split[i] == p.split[j] for i, j in pairs)
    assert p.report["exact_duplicates_dropped"] > 0
    assert set(p.labels) == {"adenocarcinoma", "large_cell_carcinoma", "squamous_cell_carcinoma",
                             "normal"}
    for lab in p.labels:
        assert p.report["per_class"][lab]["val"] > 0


def test_metrics_behave():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 4000)
    true_logits = rng.normal(size=(4000, 3)) + np.eye(3)[y] * 3
    # labels drawn from the softmax of the logits -> perfectly calibrated at T = 1
    p_true = softmax(true_logits)
    y = np.array([rng.choice(3, p=p) for p in p_true])
    assert ece(p_true, y) < 0.03
    t = fit_temperature(true_logits * 2.5, y)  # over-confident by 2.5x
    assert 2.2 < t < 2.8
    assert ece(softmax(true_logits * 2.5), y) > ece(softmax(true_logits * 2.5, t), y)
    assert auroc(np.array([0.9, 0.8, 0.1, 0.2]), np.array([True, True, False, False])) == 1.0
    rep = classification_report(np.eye(3)[[0, 1, 2, 2]], np.array([0, 1, 2, 1]), ["a", "b", "c"])
    assert rep["accuracy"] == 0.75
    assert rep["confusion_matrix"]["matrix"][1] == [0, 1, 1]
    emb = np.eye(2)[[0, 0, 1, 1]].astype(np.float32)
    r = retrieval_metrics(emb[:2], np.array([0, 0]), emb, np.array([0, 0, 1, 1]), ks=(1, 2))
    assert r["precision@1"] == 1.0 and r["precision@2"] == 1.0


@pytest.mark.slow
def test_smoke_training_exports_checked_onnx_and_resumes(shared_data, tmp_path):
    from medvault.training.train import TrainConfig, train_model

    events: list[dict] = []
    cfg = TrainConfig(name="brain-mri", out_dir=tmp_path / "models", work_dir=tmp_path / "work",
                      epochs=1, smoke=True, data_dir=shared_data, threads=1)
    train_model(cfg, progress=events.append)
    epochs = [e for e in events if e["event"] == "epoch"]
    assert len(epochs) == 1 and {"loss", "val_acc", "eta_s"} <= set(epochs[0])
    card = json.loads((tmp_path / "models" / "brain-mri-smoke.json").read_text())
    from medvault.core.ml.call import file_sha256

    assert card["sha256"] == file_sha256(tmp_path / "models" / "brain-mri-smoke.onnx")
    assert card["onnx"]["onnxruntime_vs_pytorch_max_abs_diff"] <= 1e-4
    assert card["data"]["manifest_sha256"]
    assert card["intended_use"].lower().startswith("decision support, not a diagnosis")
    # resume from the checkpoint written after epoch 1
    events.clear()
    cfg.epochs, cfg.resume = 2, True
    train_model(cfg, progress=events.append)
    assert any(e["event"] == "resume" and e["from_epoch"] == 1 for e in events)
    assert [e["epoch"] for e in events if e["event"] == "epoch"] == [2]


def test_card_command_reproduces_the_recipe():
    from dataclasses import asdict

    from medvault.training.export import recipe_flags
    from medvault.training.train import RECIPES, sizes_for, widths_for

    lung = asdict(RECIPES["lung-ct"])
    assert recipe_flags("lung-ct", lung) == ""
    assert recipe_flags("lung-ct", {**lung, "robust_p": 0.5, "input_mask": "lung_fields"}) == \
        " --robust-aug 0.5 --lung-fields"
    assert recipe_flags("lung-ct", {**lung, "last_stride": 1}) == " --fine-cam"
    assert recipe_flags("lung-ct", {**lung, "seed": 7}) == " --seed 7"
    assert recipe_flags("lung-ct", {**lung, "last_stride": 1, "cam_lung": 0.5}) == \
        " --fine-cam --cam-lung 0.5"
    brain = asdict(RECIPES["brain-mri"])
    assert sizes_for("brain-mri", 128) == ((0.0, 96), (0.5, 128))
    assert sizes_for("brain-mri", 96) == ((0.0, 96),)
    assert recipe_flags("brain-mri", {**brain, "sizes": sizes_for("brain-mri", 128)}) == \
        " --input-size 128"
    assert recipe_flags("brain-mri", {**brain, "contrast_p": 0.5, "seed": 7}) == \
        " --contrast-remap 0.5 --seed 7"
    assert recipe_flags("brain-mri", {**brain, "contrast_p": 0.25, "lesion_p": 0.3}) == \
        " --contrast-remap 0.25 --synthetic-lesions 0.3"
    assert recipe_flags("brain-mri", {**brain, "lesion_p": 0.3, "epochs": 50, "seed": 7}) == \
        " --synthetic-lesions 0.3 --epochs 50 --seed 7"
    assert widths_for(32) == (32, 64, 128, 256) and widths_for(24) == RECIPES["brain-mri"].widths
    # a card stores its recipe as JSON: the widths come back as a list
    assert recipe_flags("brain-mri", {**brain, "last_stride": 1, "widths": [32, 64, 128, 256]}) == \
        " --fine-cam --width 32"
    assert recipe_flags("brain-mri", {**brain, "widths": [24, 48, 96, 192]}) == ""


def test_fine_cam_doubles_the_heat_map_resolution_with_the_same_weights():
    from medvault.training.nets import CompactNet, ExportWrapper

    coarse, fine = CompactNet(4), CompactNet(4, last_stride=1)
    fine.load_state_dict(coarse.state_dict())  # same parameter shapes
    x = torch.rand(2, 1, 128, 128)
    cams = [ExportWrapper(n.eval(), 1.0)(x)[3] for n in (coarse, fine)]
    assert cams[0].shape == (2, 4, 8, 8) and cams[1].shape == (2, 4, 16, 16)


def test_cam_lung_loss_rewards_a_heat_map_peak_inside_the_lungs_for_cancer_slices_only():
    from medvault.training.train import cam_lung_loss

    weight = torch.eye(2)  # class c's CAM is feature map c
    lungs = torch.zeros(3, 1, 32, 32)
    lungs[:, :, :, :16] = 1.0  # left half is lung
    fmap = torch.rand(3, 2, 8, 8, generator=torch.Generator().manual_seed(0))  # a textured map
    fmap[0, 1, 3, 2] = 5.0  # slice 0: class-1 peak in the lung
    fmap[1, 1, 3, 6] = 5.0  # slice 1: class-1 peak outside
    fmap[2, 1, 3, 6] = 5.0  # slice 2: outside too, but a normal slice
    y = torch.tensor([1, 1, 1])
    inside = cam_lung_loss(weight, fmap[:1], y[:1], lungs[:1], torch.tensor([True]))
    outside = cam_lung_loss(weight, fmap[1:2], y[1:2], lungs[1:2], torch.tensor([True]))
    assert float(inside) < 0.1 < 1.0 < float(outside)
    normal_only = cam_lung_loss(weight, fmap[2:], y[2:], lungs[2:], torch.tensor([False]))
    assert float(normal_only) == 0.0
    f = fmap.clone().requires_grad_(True)
    cam_lung_loss(weight, f, y, lungs, torch.tensor([True, True, False])).backward()
    assert f.grad is not None and float(f.grad[2].abs().sum()) == 0.0  # normal: no gradient
    assert float(f.grad[1, 1, 3, 6]) > 0  # lowering the outside peak lowers the loss


@pytest.mark.parametrize("argv", [["lung-ct", "--contrast-remap", "0.5"],
                                  ["brain-mri", "--contrast-remap", "1.5"],
                                  ["brain-mri", "--cam-lung", "1.0"],
                                  ["lung-ct", "--synthetic-lesions", "0.3"],
                                  ["brain-mri", "--synthetic-lesions", "-0.1"]])
def test_train_refuses_options_outside_their_model_or_range(argv):
    from django.core.management import CommandError, call_command

    with pytest.raises(CommandError, match="only|between"):
        call_command("train", *argv)
