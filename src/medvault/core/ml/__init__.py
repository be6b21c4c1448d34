"""ML inference core: preprocess -> ONNX Runtime -> postprocess (no Django).

Contract (see the brief)::

    load_model(name, models_dir) -> LoadedModel
    analyse(model, ds_or_image) -> AnalysisOutput
    model_applies(model_name, modality, body_part) -> bool

Every analysis first checks that the input is in the model's domain (DICOM Modality and
BodyPartExamined when present, a blank-frame check, a small domain classifier shipped as
``models/domain.onnx``, and an energy score from the model itself) and answers ``refused`` with
a reason otherwise. Results are decision support, not a diagnosis.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medvault.core.ml import preprocess as pp
from medvault.core.ml.call import CallRule, file_sha256, load_rule

__all__ = [
    "AnalysisOutput",
    "LoadedModel",
    "MODEL_NAMES",
    "ModelError",
    "analyse",
    "load_model",
    "model_applies",
]

MODEL_NAMES = ("lung-ct", "brain-mri")
DISCLAIMER = "decision support, not a diagnosis"

# DICOM metadata accepted for each model. BodyPartExamined is free text in practice; compare
# upper-cased, and treat an empty value as "unknown" (the image-based gate then decides).
DOMAINS: dict[str, dict[str, Any]] = {
    "lung-ct": {
        "modalities": {"CT"},
        "body_parts": {"CHEST", "LUNG", "LUNGS", "THORAX", "CHEST_TO_PELVIS", "CHESTABDOMEN",
                       "CHESTABDPELVIS", "TORSO"},
        "domain_class": "chest_ct",
        "modality_word": "CT",
        "anatomy_word": "chest",
    },
    "brain-mri": {
        "modalities": {"MR"},
        "body_parts": {"BRAIN", "HEAD", "SKULL", "HEADNECK", "HEAD_NECK", "CEREBRUM"},
        "domain_class": "brain_mri",
        "modality_word": "MR",
        "anatomy_word": "brain",
    },
}
# CT and MR are grey-scale: their PNG/JPEG exports saved as RGB have R = G = B up to JPEG noise
# (mean |max - min| over channels <= 3.9 grey levels on every training image); a colour image
# above this is a photograph or a rendering, not a slice.
MAX_COLOUR_CHROMA = 12.0
# Modalities that say nothing about what the pixels are (secondary captures, "other").
NEUTRAL_MODALITIES = {"", "OT", "SC", "XC", "DOC"}


class ModelError(Exception):
    """A model file or card is missing, corrupt or does not match its card."""


@dataclass
class _Gate:
    session: Any
    size: int
    classes: list[str]
    min_probability: float
    blank_std: float


@dataclass
class LoadedModel:
    name: str
    version: str
    sha256: str
    card: dict[str, Any]
    session: Any
    input_size: int
    labels: list[str]
    temperature: float
    energy_threshold: float | None
    gate: _Gate | None
    call_rule: CallRule | None = None
    # the card's input.mask: "" (none) or "lung_fields" (preprocess.apply_mask)
    input_mask: str = ""
    # the card's outputs.cam_flip_average: the heat-map is the mean of the slice's map and of
    # its mirror image's map mirrored back (the probabilities stay the single view's)
    cam_flip: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)


@dataclass
class AnalysisOutput:
    label: str | None
    probabilities: dict[str, float]
    refused: bool
    reason: str
    heatmap: np.ndarray | None
    embedding: np.ndarray | None
    latency_ms: float
    model_name: str
    model_version: str
    model_sha256: str
    extra: dict[str, Any] = field(default_factory=dict)
    # "abnormal" | "normal" | "indeterminate"; None when refused or the card has no call rule
    call: str | None = None
    call_reason: str = ""


def _session(path: Path, threads: int = 1) -> Any:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def _load_card(models_dir: Path, stem: str) -> tuple[dict[str, Any], Path]:
    card_path = models_dir / f"{stem}.json"
    if not card_path.is_file():
        raise ModelError(f"model card {card_path} not found")
    try:
        card = json.loads(card_path.read_text())
    except ValueError as exc:
        raise ModelError(f"model card {card_path} is not valid JSON: {exc}") from exc
    onnx_path = models_dir / card.get("file", f"{stem}.onnx")
    if not onnx_path.is_file():
        raise ModelError(f"model file {onnx_path} not found")
    digest = file_sha256(onnx_path)
    if digest != card.get("sha256"):
        raise ModelError(f"{onnx_path.name}: SHA-256 {digest} does not match its card")
    return card, onnx_path


def _load_gate(models_dir: Path, threads: int) -> _Gate | None:
    if not (models_dir / "domain.json").is_file():
        return None
    card, path = _load_card(models_dir, "domain")
    return _Gate(
        session=_session(path, threads),
        size=int(card["input"]["shape"][-1]),
        classes=list(card["labels"]),
        min_probability=float(card["refusal"]["min_domain_probability"]),
        blank_std=float(card["refusal"]["blank_std_threshold"]),
    )


def load_model(name: str, models_dir: Path, threads: int = 1) -> LoadedModel:
    """Load ``models/<name>.onnx`` with its card (SHA-256 verified) and the domain gate."""
    if name not in MODEL_NAMES:
        raise ModelError(f"unknown model {name!r}; known: {', '.join(MODEL_NAMES)}")
    models_dir = Path(models_dir)
    card, path = _load_card(models_dir, name)
    gate = _load_gate(models_dir, threads)
    input_mask = str(card["input"].get("mask", "") or "")
    try:
        pp.check_mask(input_mask)
    except ValueError as exc:
        raise ModelError(f"{name}: {exc}") from exc
    try:
        call_rule = load_rule(card, models_dir)
    except (OSError, ValueError, KeyError) as exc:
        raise ModelError(f"{name}: call rule: {exc}") from exc
    return LoadedModel(
        name=name,
        version=str(card.get("version", "")),
        sha256=str(card["sha256"]),
        card=card,
        session=_session(path, threads),
        input_size=int(card["input"]["shape"][-1]),
        labels=list(card["labels"]),
        temperature=float(card["outputs"]["temperature"]),
        energy_threshold=card.get("refusal", {}).get("energy_threshold"),
        gate=gate,
        call_rule=call_rule,
        input_mask=input_mask,
        cam_flip=bool(card["outputs"].get("cam_flip_average", False)),
    )


def model_applies(model_name: str, modality: str, body_part: str) -> bool:
    """Should an instance with this Modality / BodyPartExamined get this model's analysis?

    The modality must match. An empty body part is accepted (the image-based domain gate
    decides at analysis time); a non-empty one must name the model's anatomy.
    """
    dom = DOMAINS.get(model_name)
    if dom is None:
        return False
    if (modality or "").strip().upper() not in dom["modalities"]:
        return False
    bp = (body_part or "").strip().upper().replace(" ", "")
    return bp == "" or bp in dom["body_parts"]


def _metadata_refusal(name: str, ds: Any) -> str | None:
    dom = DOMAINS[name]
    modality = str(getattr(ds, "Modality", "") or "").strip().upper()
    if modality not in NEUTRAL_MODALITIES and modality not in dom["modalities"]:
        return (f"out of domain: DICOM Modality is {modality}, this model reads "
                f"{dom['modality_word']} only")
    bp = str(getattr(ds, "BodyPartExamined", "") or "").strip().upper().replace(" ", "")
    if bp and bp not in dom["body_parts"]:
        return (f"out of domain: BodyPartExamined is {bp}, this model reads "
                f"{dom['anatomy_word']} images only")
    return None


def _to_uint8(ds_or_image: Any) -> tuple[np.ndarray, Any | None]:
    if isinstance(ds_or_image, np.ndarray):
        arr = ds_or_image
        if arr.dtype != np.uint8:
            raise ValueError(f"images must be uint8 (PNG/JPEG as given), got {arr.dtype}")
        return arr, None
    from pydicom.dataset import Dataset

    if isinstance(ds_or_image, Dataset):
        if "PixelData" not in ds_or_image and "FloatPixelData" not in ds_or_image:
            raise _NoPixels()
        return pp.dicom_to_uint8(ds_or_image, keep_colour=True), ds_or_image
    raise ValueError("expected a pydicom Dataset or a uint8 numpy image")


class _NoPixels(Exception):
    pass


def _refused(model: LoadedModel, reason: str, t0: float, extra: dict[str, Any] | None = None) -> AnalysisOutput:
    return AnalysisOutput(
        label=None, probabilities={}, refused=True, reason=reason, heatmap=None, embedding=None,
        latency_ms=(time.perf_counter() - t0) * 1000, model_name=model.name,
        model_version=model.version, model_sha256=model.sha256,
        extra={"disclaimer": DISCLAIMER, **(extra or {})},
    )


def analyse(model: LoadedModel, ds_or_image: Any) -> AnalysisOutput:
    """Analyse one image (pydicom Dataset or uint8 HxW / HxWx3 array)."""
    t0 = time.perf_counter()
    if not isinstance(ds_or_image, np.ndarray):
        reason = _metadata_refusal(model.name, ds_or_image)
        if reason:
            return _refused(model, reason, t0)
    try:
        img, _ds = _to_uint8(ds_or_image)
        gray = pp.to_gray(img)
    except _NoPixels:
        return _refused(model, "the DICOM object has no image pixel data", t0)
    except ValueError:
        if isinstance(ds_or_image, np.ndarray) or not hasattr(ds_or_image, "Modality"):
            raise
        return _refused(model, "cannot decode pixel data", t0)
    except Exception as exc:  # undecodable pixel data
        return _refused(model, f"cannot decode pixel data: {exc}", t0)
    if gray.size == 0 or min(gray.shape) < 8:
        return _refused(model, "image too small to analyse", t0)
    if img.ndim == 3 and img.shape[2] >= 3:
        rgb = img[:, :, :3].astype(np.int16)
        chroma = float((rgb.max(axis=2) - rgb.min(axis=2)).mean())
        if chroma > MAX_COLOUR_CHROMA:
            return _refused(model, f"out of domain: a colour image (mean chroma {chroma:.0f}); "
                                   f"CT and MR slices are grey-scale", t0)
    extra: dict[str, Any] = {"disclaimer": DISCLAIMER}
    dom = DOMAINS[model.name]
    gate = model.gate
    if gate is not None:
        if float(gray.std()) < gate.blank_std:
            return _refused(model, "out of domain: blank or near-uniform image", t0)
        small, _ = pp.prepare_gray(gray, gate.size)
        with model.lock:
            (gp,) = gate.session.run(["probabilities"], {"image": pp.to_input(small)})
        gp = gp[0]
        domain_probs = {c: round(float(p), 4) for c, p in zip(gate.classes, gp, strict=True)}
        extra["domain"] = domain_probs
        want = dom["domain_class"]
        best = gate.classes[int(np.argmax(gp))]
        if best != want or domain_probs[want] < gate.min_probability:
            what = {"chest_ct": "a chest CT", "brain_mri": "a brain MRI",
                    "other": "something other than a chest CT or brain MRI"}.get(best, best)
            return _refused(
                model,
                f"out of domain: the image looks like {what} (domain classifier p={domain_probs[best]:.2f}); "
                f"this model reads {dom['anatomy_word']} {dom['modality_word']} only",
                t0, extra)
    square, placement = pp.prepare_gray(gray, model.input_size)
    seen = pp.apply_mask(square, model.input_mask)  # what the graph is given
    with model.lock:
        probs, logits, emb, cam = model.session.run(
            ["probabilities", "logits", "embedding", "cam"], {"image": pp.to_input(seen)})
    probs, logits = probs[0], logits[0]
    t = model.temperature
    energy = float(-t * np.log(np.sum(np.exp((logits - logits.max()) / t))) - logits.max())
    extra["energy"] = round(energy, 4)
    if model.energy_threshold is not None and energy > float(model.energy_threshold):
        return _refused(model, f"out of domain: energy score {energy:.2f} above the model's "
                               f"threshold {float(model.energy_threshold):.2f}", t0, extra)
    k = int(np.argmax(probs))
    label = model.labels[k]
    class_map = cam[0, k]
    if model.cam_flip:
        mirrored = np.ascontiguousarray(seen[:, ::-1])
        with model.lock:
            (cam_m,) = model.session.run(["cam"], {"image": pp.to_input(mirrored)})
        class_map = (class_map + cam_m[0, k][:, ::-1]) / 2.0
    heatmap = pp.heatmap_to_image(class_map, placement)
    e = emb[0].astype(np.float32)
    e = e / max(float(np.linalg.norm(e)), 1e-12)
    if model.name == "brain-mri":
        extra["tumour_detected"] = label != "notumor"
        extra["tumour_probability"] = round(float(1.0 - probs[model.labels.index("notumor")]), 4)
    if model.name == "lung-ct":
        extra["cancer_probability"] = round(float(1.0 - probs[model.labels.index("normal")]), 4)
    call, call_reason = None, ""
    rule = model.call_rule
    if rule is not None:
        p_abn = float(1.0 - probs[model.labels.index(rule.normal_label)])
        dist = rule.ood.distance(e) if rule.ood is not None else None
        if dist is not None:
            extra["ood_distance"] = round(dist, 3)
        intensity = rule.intensity.distance(square) if rule.intensity is not None else None
        if intensity is not None:
            extra["intensity_distance"] = round(intensity, 4)
        call, call_reason = rule.decide(p_abn, dist, intensity)
    return AnalysisOutput(
        label=label,
        probabilities={lab: round(float(p), 6) for lab, p in zip(model.labels, probs, strict=True)},
        refused=False, reason="", heatmap=heatmap, embedding=e,
        latency_ms=(time.perf_counter() - t0) * 1000, model_name=model.name,
        model_version=model.version, model_sha256=model.sha256, extra=extra,
        call=call, call_reason=call_reason,
    )
