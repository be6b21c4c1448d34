"""Train, calibrate, evaluate and export one shipped model (``medvault train NAME``).

Reproducible: fixed seed, deterministic data order, recorded data hashes. Resumable: a checkpoint
is written after every epoch under ``var/ml/<name>/`` (never committed).
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import torch
import torch.nn.functional as F

from medvault.core.ml.preprocess import apply_mask
from medvault.training.augment import augment_mixed, augment_with_masks, remap_contrast
from medvault.training.data import SEED, prepare
from medvault.training.evaluate import (
    classification_report,
    fit_temperature,
    retrieval_metrics,
    softmax,
)
from medvault.training.lesions import paint_batch
from medvault.training.nets import CompactNet, supcon_loss


@dataclass
class Recipe:
    epochs: int
    batch: int = 64
    lr: float = 3e-3
    weight_decay: float = 5e-4
    widths: tuple[int, ...] = (24, 48, 96, 192)
    embed_dim: int = 128
    # progressive resizing: (fraction of training, input size); the last one is the served size
    sizes: tuple[tuple[float, int], ...] = ((0.0, 96), (0.5, 128))
    label_smoothing: float = 0.05
    supcon_weight: float = 0.5
    class_weighted: bool = False
    hflip: bool = True
    warmup_epochs: float = 1.0
    # share of each batch given the stronger geometric + intensity augmentation (augment_robust)
    # for other hospitals' images; 0 = the standard augmentation only
    robust_p: float = 0.0
    # input mask applied to every image before augmentation, and by serving (the card's
    # input.mask): "" or "lung_fields" (medvault.core.ml.preprocess.apply_mask)
    input_mask: str = ""
    # 1: the last stage keeps its input's resolution (a 16 x 16 CAM at 128 px), 2: halves it
    last_stride: int = 2
    # initialises the weights and orders the batches; the split always uses data.SEED
    seed: int = SEED
    # lung-ct: weight of the loss that asks the true class's heat-map on a cancer slice to
    # peak inside the lung fields (cam_lung_loss); 0 = off
    cam_lung: float = 0.0
    # brain-mri: share of each batch given a random non-monotonic grey-level curve before the
    # augmentation (augment.remap_contrast), so that the MR sequence cannot tell the classes apart
    contrast_p: float = 0.0
    # brain-mri: share of the batch's "no tumour" slices given a synthetic non-enhancing lesion
    # and trained as "glioma" (medvault.training.lesions); 0 = off
    lesion_p: float = 0.0


RECIPES: dict[str, Recipe] = {
    "brain-mri": Recipe(epochs=40, sizes=((0.0, 96),)),
    "lung-ct": Recipe(epochs=200, batch=32, class_weighted=True, warmup_epochs=3),
}


def sizes_for(name: str, size: int) -> tuple[tuple[float, int], ...]:
    """The recipe's progressive sizes with ``size`` as the served one: the first stage stays
    (when it is smaller), the second half of training runs at ``size``."""
    first = RECIPES[name].sizes[0][1]
    return ((0.0, first), (0.5, size)) if first < size else ((0.0, size),)


def widths_for(first: int) -> tuple[int, ...]:
    """CompactNet's four stage widths from the first one (``--width``): each stage doubles it."""
    return tuple(first * 2**i for i in range(4))


@dataclass
class TrainConfig:
    name: str
    out_dir: Path = Path("models")
    work_dir: Path = Path("var/ml")
    epochs: int | None = None
    resume: bool = False
    smoke: bool = False
    data_dir: Path | None = None
    device: str = "cpu"
    threads: int = 2
    recipe_overrides: dict[str, Any] = field(default_factory=dict)
    export: bool = True


def _log(msg: dict[str, Any], stream: TextIO = sys.stdout) -> None:
    print(json.dumps(msg), file=stream, flush=True)


def _size_at(recipe: Recipe, epoch: int, epochs: int) -> int:
    size = recipe.sizes[0][1]
    for frac, s in recipe.sizes:
        if epoch >= int(round(frac * epochs)):
            size = s
    return size


def lr_at(step: int, total: int, warmup: int, base: float) -> float:
    if step < warmup:
        return base * (step + 1) / warmup
    p = (step - warmup) / max(1, total - warmup)
    return base * 0.5 * (1 + float(np.cos(np.pi * p)))


def cam_lung_loss(weight: torch.Tensor, fmap: torch.Tensor, y: torch.Tensor, lungs: torch.Tensor,
                  use: torch.Tensor, sharpness: float = 4.0) -> torch.Tensor:
    """Mean over the used slices of -log(the heat-map's soft peak mass inside the lung fields).

    The true class's CAM (N x h x w) is standardised per slice and turned into a spatial
    softmax (``sharpness`` / std: close to the arg-max, with a gradient); ``lungs`` (N x 1 x H x W,
    the share of lung in each pixel) is averaged down to the CAM's cells. Slices not in ``use``
    (normal ones) or without lung fields add nothing.
    """
    cam = torch.einsum("nk,nkhw->nhw", weight[y], fmap)
    cells = F.adaptive_avg_pool2d(lungs, (int(cam.shape[-2]), int(cam.shape[-1])))[:, 0]
    keep = use & (cells.flatten(1).amax(1) > 0)
    if not bool(keep.any()):
        return cam.sum() * 0.0
    z, share = cam[keep].flatten(1), cells[keep].flatten(1)
    z = (z - z.mean(1, keepdim=True)) / (z.std(1, keepdim=True) + 1e-6)
    # log(sum softmax(s z) * share), in log space so that a peak far outside still has a gradient
    s = sharpness * z
    log_inside = torch.logsumexp(s + torch.log(share + 1e-4), 1) - torch.logsumexp(s, 1)
    return -log_inside.mean()


@torch.no_grad()
def predict_arrays(net: CompactNet, x: np.ndarray, device: str = "cpu",
                   batch: int = 256) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """uint8 N x S x S -> (logits, embeddings, pooled penultimate features)."""
    net.eval()
    logits, embs, feats = [], [], []
    for i in range(0, len(x), batch):
        xb = torch.from_numpy(x[i : i + batch]).float().div_(255.0)[:, None].to(device)
        lg, em, fmap = net(xb)
        logits.append(lg.cpu().numpy())
        embs.append(em.cpu().numpy())
        feats.append(F.normalize(fmap.mean(dim=(2, 3)), dim=1).cpu().numpy())
    return np.concatenate(logits), np.concatenate(embs), np.concatenate(feats)


def train_model(cfg: TrainConfig, progress: Callable[[dict[str, Any]], None] = _log) -> dict[str, Any]:
    recipe = Recipe(**{**asdict(RECIPES[cfg.name]), **cfg.recipe_overrides})
    torch.manual_seed(recipe.seed)
    np.random.seed(recipe.seed)
    torch.set_num_threads(cfg.threads)
    epochs = recipe.epochs = cfg.epochs or recipe.epochs  # the card's command repeats --epochs
    t_start = time.time()
    data = prepare(cfg.name, cfg.data_dir, cache_dir=cfg.work_dir / "cache",
                   limit_per_class=12 if cfg.smoke else None, size=recipe.sizes[-1][1])
    progress({"event": "data", **{k: v for k, v in data.report.items() if k != "label_conflicts"}})
    if recipe.input_mask:  # data.x is prepare_gray at the served size: mask it as serving will
        data.x = np.stack([apply_mask(im, recipe.input_mask) for im in data.x])
    tr = data.split == "train"
    va = data.split == "val"
    x_tr, y_tr = data.x[tr], data.y[tr]
    x_va, y_va = data.x[va], data.y[va]
    k = len(data.labels)
    net = CompactNet(k, recipe.widths, recipe.embed_dim, last_stride=recipe.last_stride).to(cfg.device)
    opt = torch.optim.AdamW(net.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    counts = np.bincount(y_tr, minlength=k).astype(np.float64)
    if recipe.class_weighted:
        w = (counts.sum() / np.maximum(counts, 1)) ** 0.5
        w = w / (w * counts).sum() * counts.sum()
        class_w = torch.tensor(w, dtype=torch.float32, device=cfg.device)
    else:
        class_w = None
    steps_per_epoch = max(1, len(x_tr) // recipe.batch)
    if cfg.smoke:
        steps_per_epoch = min(steps_per_epoch, 2)
    total_steps = steps_per_epoch * epochs
    warmup = int(recipe.warmup_epochs * steps_per_epoch)
    work = cfg.work_dir / cfg.name
    work.mkdir(parents=True, exist_ok=True)
    ckpt_path = work / ("checkpoint-smoke.pt" if cfg.smoke else "checkpoint.pt")
    start_epoch = 0
    history: list[dict[str, Any]] = []
    train_seconds = 0.0
    if cfg.resume and ckpt_path.exists():
        ck = torch.load(ckpt_path, map_location=cfg.device, weights_only=False)
        net.load_state_dict(ck["model"])
        opt.load_state_dict(ck["opt"])
        start_epoch = ck["epoch"]
        history = ck["history"]
        train_seconds = ck["train_seconds"]
        progress({"event": "resume", "from_epoch": start_epoch, "checkpoint": str(ckpt_path)})
    x_tr_t = torch.from_numpy(x_tr)
    y_tr_t = torch.from_numpy(y_tr)
    lungs_tr_t, cancer_tr_t = None, None
    if recipe.cam_lung:
        if recipe.robust_p or cfg.name != "lung-ct":
            raise ValueError("the CAM lung loss is for lung-ct with the standard augmentation")
        from medvault.core.ml.lung_fields import lung_field_hull

        lungs_tr_t = torch.from_numpy(np.stack([lung_field_hull(im) for im in x_tr]).astype(np.float32))
        cancer_tr_t = torch.from_numpy(y_tr != data.labels.index("normal"))
        progress({"event": "lung-fields", "train_images": len(x_tr),
                  "cancer_slices_with_lungs": int((lungs_tr_t.flatten(1).amax(1)[cancer_tr_t] > 0).sum())})
    normal_i = glioma_i = -1
    if recipe.lesion_p:
        if cfg.name != "brain-mri":
            raise ValueError("synthetic lesions are for brain-mri")
        normal_i, glioma_i = data.labels.index("notumor"), data.labels.index("glioma")
    for epoch in range(start_epoch, epochs):
        t0 = time.time()
        gen = torch.Generator().manual_seed(recipe.seed * 1000 + epoch)
        perm = torch.randperm(len(x_tr), generator=gen)
        size = _size_at(recipe, epoch, epochs)
        net.train()
        tot_loss = tot_ce = 0.0
        correct = seen = 0
        for s in range(steps_per_epoch):
            step = epoch * steps_per_epoch + s
            for g in opt.param_groups:
                g["lr"] = lr_at(step, total_steps, warmup, recipe.lr)
            idx = perm[s * recipe.batch : (s + 1) * recipe.batch]
            xb, yb = paint_batch(x_tr_t[idx].float().div_(255.0)[:, None], y_tr_t[idx], gen,
                                 recipe.lesion_p, normal_i, glioma_i)
            xb = remap_contrast(xb, gen, recipe.contrast_p)
            if lungs_tr_t is not None:
                xb, lungs = augment_with_masks(xb, lungs_tr_t[idx][:, None], size, gen, hflip=recipe.hflip)
                xb, lungs = xb.to(cfg.device), lungs.to(cfg.device)
            else:
                xb = augment_mixed(xb, size, gen, recipe.robust_p, hflip=recipe.hflip).to(cfg.device)
            yb = yb.to(cfg.device)
            logits, emb, fmap = net(xb)
            ce = F.cross_entropy(logits, yb, weight=class_w, label_smoothing=recipe.label_smoothing)
            loss = ce + recipe.supcon_weight * supcon_loss(emb, yb)
            if lungs_tr_t is not None and cancer_tr_t is not None:
                loss = loss + recipe.cam_lung * cam_lung_loss(
                    net.fc.weight, fmap, yb, lungs, cancer_tr_t[idx].to(cfg.device))
            opt.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]  # torch's Tensor.backward is unannotated
            opt.step()
            tot_loss += loss.item() * len(idx)
            tot_ce += ce.item() * len(idx)
            correct += int((logits.argmax(1) == yb).sum())
            seen += len(idx)
        lg, _, _ = predict_arrays(net, x_va, cfg.device)
        p = softmax(lg)
        val_acc = float((p.argmax(1) == y_va).mean()) if len(y_va) else float("nan")
        val_nll = float(-np.mean(np.log(np.clip(p[np.arange(len(y_va)), y_va], 1e-12, None))))
        dt = time.time() - t0
        train_seconds += dt
        done = epoch + 1 - start_epoch
        eta = (time.time() - t_start) / done * (epochs - epoch - 1) if done else 0.0
        rec = {"event": "epoch", "epoch": epoch + 1, "epochs": epochs, "size": size,
               "loss": round(tot_loss / seen, 4), "train_ce": round(tot_ce / seen, 4),
               "train_acc": round(correct / seen, 4), "val_acc": round(val_acc, 4),
               "val_nll": round(val_nll, 4), "seconds": round(dt, 1), "eta_s": round(eta)}
        history.append(rec)
        progress(rec)
        torch.save({"model": net.state_dict(), "opt": opt.state_dict(), "epoch": epoch + 1,
                    "history": history, "train_seconds": train_seconds,
                    "recipe": asdict(recipe)}, ckpt_path)
    # ---- calibration + evaluation on the validation split ----
    net = net.to("cpu")
    lg_va, emb_va, feat_va = predict_arrays(net, x_va)
    _, emb_tr, feat_tr = predict_arrays(net, x_tr)
    temperature = fit_temperature(lg_va, y_va) if len(y_va) else 1.0
    metrics: dict[str, Any] = {
        "uncalibrated": classification_report(softmax(lg_va), y_va, data.labels),
        "temperature": round(temperature, 4),
    }
    metrics["calibrated"] = classification_report(softmax(lg_va, temperature), y_va, data.labels)
    probs = softmax(lg_va, temperature)
    extra = task_metrics(cfg.name, data.labels, probs, y_va)
    retrieval = {
        "projection_head": retrieval_metrics(emb_va, y_va, emb_tr, y_tr),
        "penultimate_features": retrieval_metrics(feat_va, y_va, feat_tr, y_tr),
        **retrieval_extra(cfg.name, data.labels, emb_va, y_va, emb_tr, y_tr),
    }
    result = {
        "name": cfg.name, "labels": data.labels, "recipe": asdict(recipe), "epochs": epochs,
        "input_size": recipe.sizes[-1][1], "data": data.report, "history": history,
        "metrics": metrics, "task_metrics": extra, "retrieval": retrieval,
        "train_seconds": round(train_seconds, 1), "threads": cfg.threads,
        "machine": f"{platform.machine()} {os.cpu_count()} logical CPUs, torch {torch.__version__}"
                   + (f", device {torch.cuda.get_device_name()}" if cfg.device.startswith("cuda")
                      else ", CPU only"),
        "device": cfg.device,
        "temperature": temperature, "smoke": cfg.smoke,
    }
    progress({"event": "evaluated", "temperature": round(temperature, 4),
              "val_acc": metrics["calibrated"]["accuracy"], "ece": metrics["calibrated"]["ece_15_bins"],
              **extra, "retrieval_p10": retrieval["projection_head"]["precision@10"]})
    if not cfg.export:
        return result
    from medvault.training.export import export_model

    out_dir = cfg.out_dir
    card = export_model(net, result, out_dir, calib_x=x_va[:8], val_x=x_va, val_y=y_va,
                        progress=progress)
    result["card"] = card
    torch.save({"model": net.state_dict(), "result": result}, work / ("final-smoke.pt" if cfg.smoke else "final.pt"))
    return result


def task_metrics(name: str, labels: list[str], probs: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    pred = probs.argmax(1)
    out: dict[str, Any] = {}
    if name == "brain-mri":
        no = labels.index("notumor")
        truth = y != no
        said = pred != no
        out["tumour_yes_no_accuracy"] = round(float((truth == said).mean()), 4)
        out["tumour_sensitivity"] = round(float(said[truth].mean()), 4) if truth.any() else None
        out["tumour_specificity"] = round(float((~said[~truth]).mean()), 4) if (~truth).any() else None
    if name == "lung-ct":
        normal = labels.index("normal")
        truth = y != normal
        said = pred != normal
        out["normal_vs_cancer_accuracy"] = round(float((truth == said).mean()), 4)
        cancer = [i for i, lab in enumerate(labels) if lab != "normal"]
        m = truth
        sub = probs[m][:, cancer].argmax(1)
        true_sub = np.array([cancer.index(t) for t in y[m]])
        out["subtype_accuracy_3way_on_cancer_slices"] = (
            round(float((sub == true_sub).mean()), 4) if m.any() else None)
        # strict: 4-way prediction must be the exact subtype
        out["subtype_accuracy_4way_prediction_on_cancer_slices"] = (
            round(float((pred[m] == y[m]).mean()), 4) if m.any() else None)
        out["subtype_n"] = int(m.sum())
    return out


def retrieval_extra(name: str, labels: list[str], q: np.ndarray, qy: np.ndarray,
                    a: np.ndarray, ay: np.ndarray) -> dict[str, Any]:
    if name != "lung-ct":
        return {}
    normal = labels.index("normal")
    qm, am = qy != normal, ay != normal
    return {"projection_head_cancer_subtype_only": retrieval_metrics(q[qm], qy[qm], a[am], ay[am]),
            "projection_head_cancer_queries_full_archive": retrieval_metrics(q[qm], qy[qm], a, ay)}


def main(argv: list[str] | None = None) -> None:  # pragma: no cover - thin CLI
    import argparse

    ap = argparse.ArgumentParser(prog="medvault-train")
    ap.add_argument("name", choices=sorted(RECIPES) + ["domain"])
    ap.add_argument("--out", type=Path, default=Path("models"))
    ap.add_argument("--epochs", type=int)
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--set", action="append", default=[], help="recipe override key=json")
    a = ap.parse_args(argv)
    overrides = {}
    for kv in a.set:
        k, v = kv.split("=", 1)
        overrides[k] = json.loads(v)
    if a.name == "domain":
        from medvault.training.domain import train_domain

        train_domain(out_dir=a.out, smoke=a.smoke, threads=a.threads)
        return
    train_model(TrainConfig(name=a.name, out_dir=a.out, epochs=a.epochs, resume=a.resume,
                            smoke=a.smoke, device=a.device, threads=a.threads,
                            recipe_overrides=overrides))


if __name__ == "__main__":  # pragma: no cover
    main()
