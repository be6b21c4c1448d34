"""ONNX export, ONNX Runtime vs PyTorch check, and model cards (JSON + Markdown)."""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medvault.core.ml import preprocess as pp
from medvault.core.ml.call import file_sha256
from medvault.training.data import SEED
from medvault.training.nets import MEAN, STD, CompactNet, ExportWrapper

# the card's words for each input mask (medvault.core.ml.preprocess.apply_mask)
MASK_STEPS = {
    "lung_fields": "black out everything outside the lung fields: Otsu threshold on the "
                   "resized slice, the dark regions inside the body, holes filled, each lung's "
                   "convex hull, dilated by 2 % of the side (medvault.core.ml.lung_fields); "
                   "a slice where none is found is used as it is",
}


def recipe_flags(name: str, recipe: dict[str, Any]) -> str:
    """The ``medvault train`` options that reproduce a recipe's non-default choices."""
    from medvault.training.train import RECIPES

    flags = ""
    served = int(recipe["sizes"][-1][1])
    if served != RECIPES[name].sizes[-1][1]:
        flags += f" --input-size {served}"
    if recipe.get("robust_p"):
        flags += f" --robust-aug {recipe['robust_p']}"
    if recipe.get("input_mask") == "lung_fields":
        flags += " --lung-fields"
    if recipe.get("last_stride", 2) == 1:
        flags += " --fine-cam"
    if tuple(recipe.get("widths", RECIPES[name].widths)) != RECIPES[name].widths:
        flags += f" --width {int(recipe['widths'][0])}"
    if recipe.get("cam_lung"):
        flags += f" --cam-lung {recipe['cam_lung']}"
    if recipe.get("contrast_p"):
        flags += f" --contrast-remap {recipe['contrast_p']}"
    if recipe.get("lesion_p"):
        flags += f" --synthetic-lesions {recipe['lesion_p']}"
    if int(recipe.get("epochs", RECIPES[name].epochs)) != RECIPES[name].epochs:
        flags += f" --epochs {int(recipe['epochs'])}"
    if int(recipe.get("seed", SEED)) != SEED:
        flags += f" --seed {int(recipe['seed'])}"
    return flags


OUTPUT_NAMES = ["probabilities", "logits", "embedding", "cam"]
MODEL_VERSION = "1.0.0"

TASKS = {
    "lung-ct": {
        "task": "Chest CT slice classification: lung cancer subtype (adenocarcinoma, large-cell "
                "carcinoma, squamous-cell carcinoma) or normal.",
        "modality": ["CT"],
        "body_part": ["CHEST", "LUNG", "THORAX"],
        "dicom_mapping": (
            f"CT: stored values -> Hounsfield units with RescaleSlope/RescaleIntercept, then the "
            f"fixed window centre {pp.CT_WINDOW_CENTER:g} HU / width {pp.CT_WINDOW_WIDTH:g} HU "
            f"(-1350 HU -> 0, +150 HU -> 255, the standard lung window), rounded to 8 bits. The "
            f"training PNG/JPEG exports are 8-bit lung-window renderings whose exact windows are "
            f"not recorded and vary by source (the 'normal' slices use another window); expect "
            f"some shift on DICOM input. MONOCHROME1 is inverted."),
    },
    "brain-mri": {
        "task": "Brain MRI slice classification: glioma, meningioma, pituitary tumour or no "
                "tumour; also reports tumour detected / not detected (any tumour class).",
        "modality": ["MR"],
        "body_part": ["BRAIN", "HEAD", "SKULL"],
        "dicom_mapping": (
            f"MR has no absolute scale: the modality LUT is applied, then intensities are "
            f"scaled so that the {pp.MR_PERCENTILES[0]}th percentile of the slice maps to 0 and "
            f"the {pp.MR_PERCENTILES[1]}th to {pp.MR_HIGH_VALUE:g} (clipped at 255): the training "
            f"JPEGs are unsaturated viewer exports whose 99.5th percentile is about 180 in the "
            f"median. 8-bit DICOM (e.g. secondary captures of exports) is used as given. "
            f"MONOCHROME1 is inverted."),
    },
}


def export_onnx(module: torch.nn.Module, size: int, path: Path, output_names: list[str]) -> None:
    module.eval()
    dummy = torch.zeros(1, 1, size, size)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.onnx.export(
        module, (dummy,), str(path), input_names=["image"], output_names=output_names,
        dynamic_axes={"image": {0: "batch"}, **{n: {0: "batch"} for n in output_names}},
        opset_version=17, dynamo=False,
    )


def ort_session(path: Path, threads: int = 1):  # type: ignore[no-untyped-def]
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def check_parity(module: torch.nn.Module, path: Path, x: np.ndarray) -> float:
    """Max |ONNX Runtime - PyTorch| over every output for the uint8 batch x (N x S x S)."""
    inp = (x.astype(np.float32) / 255.0)[:, None]
    sess = ort_session(path)
    ort_out = sess.run(None, {"image": inp})
    with torch.no_grad():
        pt_out = module(torch.from_numpy(inp))
    return float(max(np.abs(a - b.numpy()).max() for a, b in zip(ort_out, pt_out, strict=True)))


def latency_ms(path: Path, size: int, threads: int = 1, n: int = 50) -> float:
    sess = ort_session(path, threads)
    x = np.random.default_rng(0).random((1, 1, size, size), dtype=np.float32)
    for _ in range(5):
        sess.run(None, {"image": x})
    t = []
    for _ in range(n):
        t0 = time.perf_counter()
        sess.run(None, {"image": x})
        t.append((time.perf_counter() - t0) * 1000)
    return float(np.median(t))


def export_model(net: CompactNet, result: dict[str, Any], out_dir: Path, calib_x: np.ndarray,
                 val_x: np.ndarray, val_y: np.ndarray,
                 progress: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    name = result["name"]
    size = result["input_size"]
    wrapper = ExportWrapper(net.eval(), result["temperature"]).eval()
    suffix = "-smoke" if result["smoke"] else ""
    onnx_path = out_dir / f"{name}{suffix}.onnx"
    export_onnx(wrapper, size, onnx_path, OUTPUT_NAMES)
    parity = check_parity(wrapper, onnx_path, val_x[:64] if len(val_x) else calib_x)
    if parity > 1e-4:
        raise RuntimeError(f"ONNX Runtime differs from PyTorch by {parity:.2e} (> 1e-4)")
    lat = latency_ms(onnx_path, size, threads=1)
    spec = TASKS[name]
    mask = str(result["recipe"].get("input_mask", "") or "")
    cal = result["metrics"]["calibrated"]
    card = {
        "name": name,
        "version": MODEL_VERSION,
        "file": onnx_path.name,
        "sha256": file_sha256(onnx_path),
        "size_bytes": onnx_path.stat().st_size,
        "created": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "intended_use": "Decision support, not a diagnosis. Research/education prototype trained "
                        "on small public Kaggle sets of 8-bit slice exports; not a medical "
                        "device; every result must be reviewed by a qualified clinician.",
        "task": spec["task"],
        "labels": result["labels"],
        "label_display": {lab: lab.replace("_", " ") for lab in result["labels"]},
        "domain": {"modality": spec["modality"], "body_part": spec["body_part"]},
        "input": {
            "name": "image", "shape": [None, 1, size, size], "dtype": "float32",
            "range": "[0, 1] = uint8 / 255",
            "preprocessing": [
                "decode; RGB -> grey with ITU-R 601 luma (Pillow 'L')",
                "pad with black to a centred square (aspect ratio kept, never stretched)",
                f"resize to {size}x{size} with Pillow bilinear (antialiased) resampling",
                *([MASK_STEPS[mask]] if mask else []),
                "divide by 255; the graph itself subtracts "
                f"{MEAN} and divides by {STD}",
            ],
            **({"mask": mask} if mask else {}),
            "png_jpeg": "used as given (8-bit)",
            "dicom": spec["dicom_mapping"],
        },
        "outputs": {
            "probabilities": "N x C calibrated class probabilities = softmax(logits / T)",
            "logits": "N x C raw logits",
            "temperature": result["temperature"],
            "embedding_dim": net.embed_dim,
            "embedding": f"N x {net.embed_dim} L2-normalised retrieval embedding "
                         "(projection head trained with a supervised contrastive loss)",
            "cam": "N x C x h x w class activation maps (classifier weights x last feature "
                   "maps); upsample the predicted class's map to the padded square, crop the "
                   "padding, clip at 0 and scale to [0, 1]",
        },
        "architecture": {
            "type": "CompactNet (4-stage residual CNN, global average pooling, linear "
                    "classifier + 2-layer projection head), trained from scratch",
            "widths": list(result["recipe"]["widths"]),
            "parameters": int(sum(p.numel() for p in net.parameters())),
        },
        "training": {
            "command": f"medvault train {name}" + recipe_flags(name, result["recipe"]),
            "recipe": result["recipe"],
            "epochs": result["epochs"],
            "seed": result["data"]["split_seed"],
            "train_seconds": result["train_seconds"],
            "threads": result["threads"],
            "machine": result["machine"],
            "augmentation": (
                (f"a synthetic non-enhancing lesion painted into {result['recipe']['lesion_p']:g} "
                 "of the no-tumour slices, trained as glioma; " if result["recipe"].get("lesion_p") else "")
                + (f"random non-monotonic grey-level curve on {result['recipe']['contrast_p']:g} "
                 "of each batch first; " if result["recipe"].get("contrast_p") else "")
                + "random rotation +-15 deg, scale 0.85-1.15, shift +-8%, horizontal "
                "flip, gamma, contrast, brightness, Gaussian noise; progressive "
                "resizing " + ", ".join(f"{s}px from {int(f*100)}%"
                                        for f, s in result["recipe"]["sizes"])),
            "loss": "cross-entropy (label smoothing) + supervised contrastive loss on the "
                    "projection head",
            "history": result["history"],
        },
        "data": result["data"],
        "validation": {
            "note": "Leakage-free validation split made from the data's train images (grouped "
                    "by exact and near duplicates). There is no held-out test split here; the "
                    "temperature was fitted on this split, so these figures are optimistic for "
                    "calibration; accuracy figures come from the last epoch (no model selection "
                    "on the split).",
            **result["metrics"],
            **result["task_metrics"],
        },
        "retrieval": {
            "protocol": "validation images queried against the training images as archive; "
                        "relevant = same class; cosine similarity on the embedding output",
            **result["retrieval"],
        },
        "targets": target_report(name, result),
        "onnx": {"opset": 17, "onnxruntime_vs_pytorch_max_abs_diff": parity,
                 "cpu_latency_ms_batch1_1thread_median": round(lat, 2)},
    }
    card_path = out_dir / f"{name}{suffix}.json"
    card_path.write_text(json.dumps(card, indent=1) + "\n")
    (out_dir / f"{name}{suffix}.md").write_text(card_markdown(card))
    progress({"event": "exported", "onnx": str(onnx_path), "sha256": card["sha256"],
              "parity": parity, "latency_ms": round(lat, 2),
              "size_kb": round(card["size_bytes"] / 1024, 1), "targets": card["targets"],
              "val_accuracy": cal["accuracy"], "ece": cal["ece_15_bins"]})
    return card


def target_report(name: str, result: dict[str, Any]) -> dict[str, Any]:
    cal = result["metrics"]["calibrated"]
    tm = result["task_metrics"]
    rt = result["retrieval"]
    out: dict[str, Any] = {}

    def t(key: str, value: float | None, target: float, higher: bool = True) -> None:
        ok = value is not None and (value >= target if higher else value <= target)
        out[key] = {"value": value, "target": target, "met": bool(ok)}

    if name == "brain-mri":
        t("accuracy_4class", cal["accuracy"], 0.95)
        t("tumour_yes_no_accuracy", tm["tumour_yes_no_accuracy"], 0.97)
        t("retrieval_precision@10", rt["projection_head"]["precision@10"], 0.95)
    else:
        t("subtype_accuracy_3way", tm["subtype_accuracy_3way_on_cancer_slices"], 0.85)
        t("normal_vs_cancer_accuracy", tm["normal_vs_cancer_accuracy"], 0.98)
        t("retrieval_subtype_precision@10",
          rt["projection_head_cancer_subtype_only"]["precision@10"], 0.85)
    t("ece_after_temperature", cal["ece_15_bins"], 0.05, higher=False)
    return out


def _training_lines(training: dict[str, Any]) -> list[str]:
    def one(t: dict[str, Any]) -> str:
        return (f"`{t['command']}`, {t['epochs']} epochs, {t['train_seconds'] / 60:.1f} min on "
                f"{t['machine']} ({t['threads']} threads)")

    if "members" not in training:
        return [f"- Training: {one(training)}"]
    return [f"- Ensemble: `{training['command']}`; {training['ensemble']}",
            *(f"- Member {i}: {one(t)}" for i, t in enumerate(training["members"]))]


def card_markdown(card: dict[str, Any]) -> str:
    v = card["validation"]
    cal = v["calibrated"]
    lines = [
        f"# Model card: {card['name']} v{card['version']}",
        "",
        f"**Intended use:** {card['intended_use']}",
        "",
        f"**Task:** {card['task']}",
        "",
        f"- File: `{card['file']}` ({card['size_bytes'] / 1024:.0f} KiB), SHA-256 `{card['sha256']}`",
        f"- Labels: {', '.join(card['labels'])}",
        f"- Domain: modality {'/'.join(card['domain']['modality'])}, body part "
        f"{'/'.join(card['domain']['body_part'])}; anything else is refused (see "
        "`domain.md`)",
        f"- Input: {card['input']['shape']} float32; " + "; ".join(card['input']['preprocessing']),
        f"- DICOM: {card['input']['dicom']}",
        f"- Architecture: {card['architecture']['type']}, "
        f"{card['architecture']['parameters']:,} parameters",
        *_training_lines(card["training"]),
        f"- CPU latency (ONNX Runtime, batch 1, 1 thread, median): "
        f"{card['onnx']['cpu_latency_ms_batch1_1thread_median']} ms"
        + (f"; ONNX vs PyTorch max diff {card['onnx']['onnxruntime_vs_pytorch_max_abs_diff']:.1e}"
           if "onnxruntime_vs_pytorch_max_abs_diff" in card["onnx"] else "")
        + (f" (measured on {card['onnx']['cpu_latency_measured_on']}; on the 2-core machine "
           f"under load: {card['onnx']['cpu_latency_this_2core_machine']['onnxruntime_batch1_1thread_p50_ms']}"
           f" ms p50, whole analyse() path "
           f"{card['onnx']['cpu_latency_this_2core_machine']['analyse_path_p50_ms']} ms)"
           if "cpu_latency_this_2core_machine" in card["onnx"] else ""),
        "",
        "## Data and duplicates",
        "",
    ]
    d = card["data"]
    lines += [
        f"Source folder `{d['dataset']}` ({d['files']} files, manifest SHA-256 "
        f"`{d['manifest_sha256'][:16]}...`, original splits pooled: {d['original_splits_pooled']}).",
        f"Duplicate groups: {d['duplicate_groups']} ({d['files_in_duplicate_groups']} files); "
        f"{d['near_duplicate_pairs']} near-duplicate pairs ({d['near_duplicate_rule']}); "
        f"{d['exact_duplicates_dropped']} exact copies dropped; "
        f"{d['label_conflict_files_dropped']} files dropped for label conflicts "
        f"({d['label_conflicts']}). Kept {d['kept']}: train {d['train']}, validation {d['val']} "
        "(whole groups on one side only; seed "
        f"{d['split_seed']}).",
        "",
        "| class | train | val |", "|---|---|---|",
    ]
    for lab, c in d["per_class"].items():
        lines.append(f"| {lab} | {c['train']} | {c['val']} |")
    lines += ["", "## Validation metrics (leakage-free split; no test split exists here)", "",
              f"Accuracy {cal['accuracy']:.4f}, macro-F1 {cal['macro_f1']:.4f}, ECE "
              f"{cal['ece_15_bins']:.4f} after temperature scaling (T = {v['temperature']}; "
              f"before: {v['uncalibrated']['ece_15_bins']:.4f}).", "",
              "| class | recall | precision | AUROC (one-vs-rest) | n |", "|---|---|---|---|---|"]
    for lab, c in cal["per_class"].items():
        lines.append(f"| {lab} | {c['recall']} | {c['precision']} | {c['auroc_one_vs_rest']} | "
                     f"{c['support']} |")
    lines += ["", "Confusion matrix (rows true, columns predicted, order as labels):", "", "```"]
    for row in cal["confusion_matrix"]["matrix"]:
        lines.append(" ".join(f"{x:5d}" for x in row))
    lines += ["```", ""]
    extra = {k: val for k, val in v.items() if k not in ("uncalibrated", "calibrated", "note",
                                                          "temperature")}
    for k2, val in extra.items():
        lines.append(f"- {k2}: {val}")
    if card["name"] == "lung-ct":
        lines += ["", "**Shortcut warning:** the `normal` slices come from another source and "
                  "another CT window; a single threshold on pixel spread separates them from the "
                  "cancer slices in this data set. Normal-vs-cancer accuracy therefore says little "
                  "about real-world performance; the three-way cancer-subtype accuracy (computed "
                  "among cancer slices only) is the meaningful figure."]
    lines += ["", "## Retrieval (validation queried against training archive)", ""]
    for k2, val in card["retrieval"].items():
        if isinstance(val, dict):
            lines.append(f"- {k2}: " + ", ".join(f"{a}={b}" for a, b in val.items()))
    lines += ["", "## Targets", "", "| target | value | goal | met |", "|---|---|---|---|"]
    for k2, tv in card["targets"].items():
        lines.append(f"| {k2} | {tv['value']} | {tv['target']} | {'yes' if tv['met'] else 'NO'} |")
    lines += ["", f"_{v['note']}_", ""]
    return "\n".join(lines)
