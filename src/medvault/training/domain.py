"""Out-of-domain gate: a small 3-class classifier (chest CT / brain MRI / other).

Negatives ("other"): MedMNIST breast ultrasound and pneumonia chest X-ray (official splits),
natural images shipped with scikit-image (read from its data folder, never downloaded), and
synthetic images (noise, gradients, text, shapes, checkerboards, near-blank frames).
Held-out evaluation (figures in ``models/domain.json``) runs the whole ``analyse()`` path of both
shipped models over held-out in-domain images (their validation splits) and held-out negatives.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont
from torch import nn

from medvault.core.ml.preprocess import prepare_gray
from medvault.training.augment import augment
from medvault.training.data import SEED, default_data_dir, prepare

CLASSES = ["chest_ct", "brain_mri", "other"]
SIZE = 64
# scikit-image files (shipped inside the wheel) split by file between training and held-out
NATURAL_TRAIN = ["astronaut.png", "brick.png", "cell.png", "chelsea.png", "chessboard_GRAY.png",
                 "clock_motion.png", "coins.png", "color.png", "grass.png", "gravel.png",
                 "hubble_deep_field.jpg", "ihc.png", "logo.png", "microaneurysms.png",
                 "motorcycle_left.png", "phantom.png"]
NATURAL_TEST = ["camera.png", "coffee.png", "horse.png", "moon.png", "page.png", "retina.jpg",
                "rocket.jpg", "text.png", "motorcycle_right.png", "chessboard_RGB.png"]
MIN_DOMAIN_PROBABILITY = 0.5
BLANK_STD = 2.0


class DomainNet(nn.Module):
    def __init__(self, widths: tuple[int, ...] = (16, 32, 64, 96)) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        cin = 1
        for w in widths:
            layers += [nn.Conv2d(cin, w, 3, 1, 1, bias=False), nn.BatchNorm2d(w),
                       nn.ReLU(inplace=True), nn.Conv2d(w, w, 3, 1, 1, bias=False),
                       nn.BatchNorm2d(w), nn.ReLU(inplace=True), nn.MaxPool2d(2)]
            cin = w
        self.body = nn.Sequential(*layers)
        self.fc = nn.Linear(cin, len(CLASSES))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - 0.25) / 0.25
        logits: torch.Tensor = self.fc(self.body(x).mean(dim=(2, 3)))
        return logits


class DomainExport(nn.Module):
    def __init__(self, net: DomainNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor):  # type: ignore[no-untyped-def]
        logits = self.net(x)
        return torch.softmax(logits, dim=1), logits


def _skimage_dir() -> Path:
    import skimage

    return Path(skimage.__file__).parent / "data"


def _load_natural(names: list[str]) -> list[np.ndarray]:
    out = []
    d = _skimage_dir()
    for n in names:
        p = d / n
        if p.exists():
            with Image.open(p) as im:
                out.append(np.asarray(im.convert("L")))
    lfw = d / "lfw_subset.npy"
    return out if not lfw.exists() else out


def _lfw(train: bool) -> list[np.ndarray]:
    p = _skimage_dir() / "lfw_subset.npy"
    if not p.exists():
        return []
    faces = np.load(p)
    faces = faces[:100] if train else faces[100:]
    return [np.clip(f * 255 if f.max() <= 1.0 else f, 0, 255).astype(np.uint8) for f in faces]


def _crops(images: list[np.ndarray], n: int, rng: np.random.Generator) -> list[np.ndarray]:
    out = []
    for i in range(n):
        img = images[i % len(images)]
        h, w = img.shape
        s = int(min(h, w) * rng.uniform(0.3, 1.0))
        y = rng.integers(0, h - s + 1)
        x = rng.integers(0, w - s + 1)
        crop = img[y : y + s, x : x + s]
        if rng.random() < 0.3:  # non-square crops exercise the padding path
            crop = crop[:, : max(8, int(s * rng.uniform(0.5, 1.0)))]
        if rng.random() < 0.3:
            crop = 255 - crop
        out.append(np.ascontiguousarray(crop))
    return out


def composites(images: list[np.ndarray], n: int, rng: np.random.Generator) -> list[np.ndarray]:
    """"Object on a plain background" photographs: a natural crop pasted at a random scale and
    place onto a flat or gradient background (the look that a chest CT slice also has)."""
    out = []
    for _ in range(n):
        img = images[int(rng.integers(0, len(images)))]
        h, w = img.shape
        s = int(min(h, w) * rng.uniform(0.2, 0.8))
        y, x = int(rng.integers(0, h - s + 1)), int(rng.integers(0, w - s + 1))
        crop = img[y : y + s, x : x + s]
        side = int(rng.integers(128, 384))
        bw, bh = int(side * rng.uniform(0.7, 1.3)), side
        base = float(rng.uniform(0, 255))
        yy, xx = np.mgrid[0:bh, 0:bw]
        grad = rng.uniform(-60, 60) * (xx / bw) + rng.uniform(-60, 60) * (yy / bh)
        canvas = np.clip(base + grad + rng.normal(0, rng.uniform(0, 6), (bh, bw)), 0, 255)
        obj = int(min(bh, bw) * rng.uniform(0.3, 0.9))
        resized = np.asarray(Image.fromarray(crop).resize((obj, obj), Image.Resampling.BILINEAR))
        oy, ox = int(rng.integers(0, bh - obj + 1)), int(rng.integers(0, bw - obj + 1))
        if rng.random() < 0.5:  # round object (cup, plate, clock...)
            m = ((np.mgrid[0:obj, 0:obj] - obj / 2) ** 2).sum(0) <= (obj / 2) ** 2
            region = canvas[oy : oy + obj, ox : ox + obj]
            region[m] = resized[m]
        else:
            canvas[oy : oy + obj, ox : ox + obj] = resized
        out.append(canvas.astype(np.uint8))
    return out


def synthetic(n: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Noise, gradients, text, shapes, checkerboards, near-blank frames."""
    out: list[np.ndarray] = []
    font = ImageFont.load_default()
    s = 128
    yy, xx = np.mgrid[0:s, 0:s] / s
    for i in range(n):
        kind = i % 8
        img: np.ndarray
        if kind == 0:
            img = rng.integers(0, 256, (s, s))
        elif kind == 1:
            img = np.clip(rng.normal(rng.uniform(40, 200), rng.uniform(5, 60), (s, s)), 0, 255)
        elif kind == 2:
            a = rng.uniform(0, 2 * np.pi)
            g = np.cos(a) * xx + np.sin(a) * yy
            img = (g - g.min()) / max(float(np.ptp(g)), 1e-6) * 255
        elif kind == 3:
            r = np.hypot(xx - rng.uniform(0.2, 0.8), yy - rng.uniform(0.2, 0.8))
            img = np.clip(255 - r * rng.uniform(150, 400), 0, 255)
        elif kind == 4:
            im = Image.new("L", (s, s), int(rng.integers(0, 256)))
            d = ImageDraw.Draw(im)
            for _ in range(int(rng.integers(2, 9))):
                d.text((int(rng.integers(0, s - 40)), int(rng.integers(0, s - 10))),
                       "".join(chr(int(c)) for c in rng.integers(65, 91, 6)),
                       fill=int(rng.integers(0, 256)), font=font)
            img = np.asarray(im)
        elif kind == 5:
            im = Image.new("L", (s, s), int(rng.integers(0, 256)))
            d = ImageDraw.Draw(im)
            for _ in range(int(rng.integers(1, 6))):
                x0, y0 = rng.integers(0, s - 20, 2)
                x1, y1 = x0 + rng.integers(10, 80), y0 + rng.integers(10, 80)
                box = (int(x0), int(y0), int(x1), int(y1))
                fill = int(rng.integers(0, 256))
                if rng.random() < 0.5:
                    d.ellipse(box, fill=fill)
                else:
                    d.rectangle(box, fill=fill)
            img = np.asarray(im)
        elif kind == 6:
            k = int(rng.integers(2, 16))
            img = ((np.floor(xx * k) + np.floor(yy * k)) % 2) * rng.uniform(100, 255)
        else:
            img = np.full((s, s), rng.uniform(0, 255)) + rng.normal(0, rng.uniform(0, 4), (s, s))
        out.append(np.clip(img, 0, 255).astype(np.uint8))
    return out


def _medmnist(data_dir: Path, split: str) -> list[np.ndarray]:
    out = []
    for f in ("breastmnist.npz", "pneumoniamnist.npz"):
        p = data_dir / "medmnist" / f
        if p.exists():
            d = np.load(p)
            out += [np.asarray(x, np.uint8) for x in d[f"{split}_images"]]
    return out


def build_sets(data_dir: Path, cache_dir: Path, smoke: bool = False) -> dict[str, Any]:
    rng = np.random.default_rng(SEED)
    lung = prepare("lung-ct", data_dir, cache_dir, limit_per_class=12 if smoke else None)
    brain = prepare("brain-mri", data_dir, cache_dir, limit_per_class=12 if smoke else None)

    def small(images: list[np.ndarray]) -> np.ndarray:
        return np.stack([prepare_gray(im, SIZE)[0] for im in images]) if images else \
            np.zeros((0, SIZE, SIZE), np.uint8)

    n_syn = 60 if smoke else 1200
    natural = _load_natural(NATURAL_TRAIN)
    other_train = (_medmnist(data_dir, "train")[: 100 if smoke else None]
                   + _crops(natural + _lfw(True), 80 if smoke else 1500, rng)
                   + natural * (1 if smoke else 20)  # full frames (augmented when sampled)
                   + [255 - im for im in natural] * (1 if smoke else 5)
                   + composites(natural, 40 if smoke else 1500, rng)
                   + synthetic(n_syn, rng))
    other_test_parts = {
        "medmnist_breast_ultrasound_and_pneumonia_xray_test": _medmnist(data_dir, "test"),
        "natural_images_skimage_heldout_files": _crops(_load_natural(NATURAL_TEST), 300, rng),
        "natural_images_skimage_heldout_full_frames": _load_natural(NATURAL_TEST),
        "object_on_background_composites_of_heldout_files": composites(
            _load_natural(NATURAL_TEST), 200, np.random.default_rng(SEED + 2)),
        "faces_lfw_heldout": _lfw(False),
        "synthetic_noise_gradients_text_shapes": synthetic(400, np.random.default_rng(SEED + 1)),
    }
    return {
        "lung": lung, "brain": brain,
        "train_x": np.concatenate([small(list(lung.x[lung.split == "train"])),
                                   small(list(brain.x[brain.split == "train"])),
                                   small(other_train)]),
        "train_y": np.concatenate([np.full((lung.split == "train").sum(), 0),
                                   np.full((brain.split == "train").sum(), 1),
                                   np.full(len(other_train), 2)]).astype(np.int64),
        "other_test": other_test_parts,
    }


def train_domain(out_dir: Path = Path("models"), smoke: bool = False, threads: int = 2,
                 data_dir: Path | None = None, work_dir: Path = Path("var/ml"),
                 epochs: int = 10, progress: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    from medvault.core.ml.call import file_sha256
    from medvault.training.export import export_onnx

    log = progress or (lambda m: print(json.dumps(m), flush=True))
    torch.manual_seed(SEED)
    torch.set_num_threads(threads)
    data_dir = data_dir or default_data_dir()
    t0 = time.time()
    sets = build_sets(data_dir, work_dir / "cache", smoke)
    x, y = sets["train_x"], sets["train_y"]
    counts = np.bincount(y, minlength=3)
    log({"event": "domain-data", "train_per_class": dict(zip(CLASSES, counts.tolist(), strict=True))})
    net = DomainNet()
    opt = torch.optim.AdamW(net.parameters(), lr=3e-3, weight_decay=5e-4)
    per_class = 40 if smoke else 1500
    epochs = 1 if smoke else epochs
    steps = per_class * 3 // 64
    total = steps * epochs
    xt = torch.from_numpy(x)
    step = 0
    for epoch in range(epochs):
        te = time.time()
        gen = torch.Generator().manual_seed(SEED + epoch)
        rng = np.random.default_rng(SEED + epoch)
        # balanced epoch: per_class samples of every class
        idx = np.concatenate([rng.choice(np.nonzero(y == c)[0], per_class, replace=True)
                              for c in range(3)])
        idx = rng.permutation(idx)
        net.train()
        tot = 0.0
        for s in range(steps):
            for g in opt.param_groups:
                g["lr"] = 3e-3 * 0.5 * (1 + np.cos(np.pi * step / total))
            b = torch.from_numpy(idx[s * 64 : (s + 1) * 64])
            xb = xt[b].float().div_(255.0)[:, None]
            xb = augment(xb, SIZE, gen, strong=True)
            # extra intensity variety so that other DICOM windows stay in-domain
            gam = torch.exp((torch.rand(len(b), generator=gen) - 0.5) * 1.0)[:, None, None, None]
            xb = xb.clamp(0, 1) ** gam
            loss = F.cross_entropy(net(xb), torch.from_numpy(y[b.numpy()]), label_smoothing=0.05)
            opt.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]  # torch's Tensor.backward is unannotated
            opt.step()
            tot += loss.item()
            step += 1
        log({"event": "domain-epoch", "epoch": epoch + 1, "epochs": epochs,
             "loss": round(tot / steps, 4), "seconds": round(time.time() - te, 1)})
    net.eval()
    train_seconds = time.time() - t0
    out_dir.mkdir(parents=True, exist_ok=True)
    suffix = "-smoke" if smoke else ""
    path = out_dir / f"domain{suffix}.onnx"
    export_onnx(DomainExport(net), SIZE, path, ["probabilities", "logits"])
    card = {
        "name": "domain",
        "version": "1.1.0",
        "file": path.name,
        "sha256": file_sha256(path),
        "size_bytes": path.stat().st_size,
        "intended_use": "Gate in front of the lung-ct and brain-mri models: decides whether an "
        "image is a chest CT slice, a brain MRI slice or something else, so that "
        "the analysis can refuse out-of-domain input. Decision support, not a "
        "diagnosis.",
        "labels": CLASSES,
        "input": {
            "name": "image",
            "shape": [None, 1, SIZE, SIZE],
            "dtype": "float32",
            "preprocessing": "same as the models (grey, pad to square, Pillow bilinear "
            f"resize to {SIZE}x{SIZE}, /255); DICOM mapped as the models'",
        },
        "refusal": {
            "rule": "refuse when (a) DICOM Modality is set, not OT/SC/XC/DOC and not the model's "
            "modality, or BodyPartExamined is set and not the model's anatomy; or (b) the "
            "image is in colour (mean channel spread > 12 grey levels) or near-uniform "
            "(grey-level std < blank_std_threshold); or (c) the "
            "domain classifier's arg-max is not the model's domain or its probability for "
            "the domain is < min_domain_probability",
            "min_domain_probability": MIN_DOMAIN_PROBABILITY,
            "blank_std_threshold": BLANK_STD,
            "max_colour_chroma": 12.0,
        },
        "training": {
            "command": "medvault train domain",
            "epochs": epochs,
            "train_per_class": dict(zip(CLASSES, counts.tolist(), strict=True)),
            "balanced_samples_per_class_per_epoch": per_class,
            "train_seconds": round(train_seconds, 1),
            "threads": threads,
            "negatives": "MedMNIST v2 breastmnist + pneumoniamnist train splits (CC BY "
            "4.0, Yang et al. 2023); random crops of scikit-image sample "
            f"images {NATURAL_TRAIN} (also full frames, inverted frames "
            "and 'object on plain background' composites) and LFW faces "
            "0-99; synthetic noise, gradients, text, shapes, "
            "checkerboards, near-blank frames",
            "positives": "training splits of chest_ct and brain_mri (same leakage-free split as the models)",
        },
    }
    (out_dir / f"domain{suffix}.json").write_text(json.dumps(card, indent=1) + "\n")
    torch.save(net.state_dict(), work_dir / f"domain{suffix}.pt")
    log({"event": "domain-exported", "onnx": str(path), "seconds": round(train_seconds, 1)})
    return {"card": card, "sets": sets}


def evaluate_refusal(models_dir: Path, sets: dict[str, Any]) -> dict[str, Any]:
    """Run the whole analyse() path of both models over held-out in-domain and OOD images."""
    from medvault.core.ml import analyse, load_model

    lung_m = load_model("lung-ct", models_dir)
    brain_m = load_model("brain-mri", models_dir)
    lung, brain = sets["lung"], sets["brain"]
    lung_val = list(lung.x[lung.split == "val"])
    brain_val = list(brain.x[brain.split == "val"])

    def rate(model, images: list[np.ndarray]) -> tuple[float, int]:  # type: ignore[no-untyped-def]
        refused = sum(1 for im in images if analyse(model, im).refused)
        return refused / max(len(images), 1), len(images)

    res: dict[str, Any] = {"in_domain_wrongly_refused": {}, "out_of_domain_refused": {}}
    r, n = rate(lung_m, lung_val)
    res["in_domain_wrongly_refused"]["lung-ct_on_chest_ct_validation"] = {"rate": round(r, 4), "n": n}
    r, n = rate(brain_m, brain_val)
    res["in_domain_wrongly_refused"]["brain-mri_on_brain_mri_validation"] = {"rate": round(r, 4), "n": n}
    total_ood = refused_ood = 0
    for model, cross_name, cross in ((lung_m, "brain_mri_validation", brain_val),
                                     (brain_m, "chest_ct_validation", lung_val)):
        parts = {cross_name: cross, **sets["other_test"]}
        for pname, imgs in parts.items():
            r, n = rate(model, imgs)
            res["out_of_domain_refused"][f"{model.name}_on_{pname}"] = {"rate": round(r, 4), "n": n}
            total_ood += n
            refused_ood += round(r * n)
    res["out_of_domain_refused_overall"] = round(refused_ood / max(total_ood, 1), 4)
    ind = res["in_domain_wrongly_refused"]
    tot_in = sum(v["n"] for v in ind.values())
    res["in_domain_wrongly_refused_overall"] = round(
        sum(v["rate"] * v["n"] for v in ind.values()) / max(tot_in, 1), 4)
    res["targets"] = {
        "refuse_ood_>=0.99": res["out_of_domain_refused_overall"] >= 0.99,
        "wrongly_refuse_in_domain_<=0.02": res["in_domain_wrongly_refused_overall"] <= 0.02,
    }
    return res
