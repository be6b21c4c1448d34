"""The clinical ``call`` of a result: ``abnormal``, ``normal`` or ``indeterminate`` (no Django).

A classifier's arg-max label says which class is most likely; it does not say whether it is safe
to tell a clinician "no tumour". The call adds that:

- ``normal`` only when the probability of abnormal (any tumour / cancer class) is below
  ``normal_below``, at most the threshold chosen on the internal validation split for
  sensitivity >= 0.98 (at most 2 % of the validation abnormals fall below it) and at most 0.5;
- ``abnormal`` when it is at least ``abnormal_at`` (a confident abnormal: at least that
  sensitivity threshold);
- ``indeterminate`` in between: "a tumour cannot be excluded; needs a radiologist's read";
- ``indeterminate`` as well, whatever the probabilities, when the image passed the domain gate
  but its embedding lies far from the training data: the class-conditional Mahalanobis distance
  (shared covariance, fitted on the training split) is above ``ood.threshold`` (a high
  percentile of the same distance on the internal validation split): "outside validated
  conditions".

The rule and its statistics live in the model card (``card["call"]``) and in a small ``.npz``
next to the ONNX file whose SHA-256 the card records. ``external/`` data is never used to fit
either.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

CALLS = ("abnormal", "normal", "indeterminate")
REASON_NORMAL = "probability of abnormal below the threshold chosen for sensitivity >= 0.98"
REASON_ABNORMAL = "confident abnormal"
REASON_UNSURE = "a tumour cannot be excluded; needs a radiologist's read"
REASON_OOD = "outside validated conditions"

# Which labels mean "abnormal" (tumour / cancer present) and which one is "normal".
NORMAL_LABEL = {"lung-ct": "normal", "brain-mri": "notumor"}


@dataclass(frozen=True)
class OodRule:
    """Class-conditional Mahalanobis distance on the embedding (Lee et al. 2018)."""

    means: np.ndarray  # C x D class means of the training embeddings
    precision: np.ndarray  # D x D inverse of the shared (shrunk) covariance
    threshold: float

    def distance(self, embedding: np.ndarray) -> float:
        return float(mahalanobis(np.asarray(embedding, np.float64)[None], self.means,
                                 self.precision)[0])


@dataclass(frozen=True)
class CallRule:
    normal_label: str
    normal_below: float
    abnormal_at: float
    ood: OodRule | None = None

    def decide(self, p_abnormal: float, ood_distance: float | None = None) -> tuple[str, str]:
        """-> (call, reason)."""
        if self.ood is not None and ood_distance is not None and ood_distance > self.ood.threshold:
            return "indeterminate", REASON_OOD
        if p_abnormal < self.normal_below:
            return "normal", REASON_NORMAL
        if p_abnormal >= self.abnormal_at:
            return "abnormal", REASON_ABNORMAL
        return "indeterminate", REASON_UNSURE


def mahalanobis(x: np.ndarray, means: np.ndarray, precision: np.ndarray) -> np.ndarray:
    """N x D -> N: the smallest Mahalanobis distance to any class mean."""
    diff = x[:, None, :] - means[None, :, :]  # N x C x D
    d2: np.ndarray = np.einsum("ncd,de,nce->nc", diff, precision, diff)
    distance: np.ndarray = np.sqrt(np.maximum(d2.min(axis=1), 0.0))
    return distance


def fit_mahalanobis(emb: np.ndarray, y: np.ndarray, n_classes: int,
                    shrinkage: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """Class means and the precision of the shared covariance, shrunk towards its diagonal
    mean (the embedding is 128-d; the lung training split has 460 images)."""
    emb = np.asarray(emb, np.float64)
    means = np.stack([emb[y == c].mean(axis=0) for c in range(n_classes)])
    centred = emb - means[y]
    cov = centred.T @ centred / max(len(emb) - n_classes, 1)
    target = np.eye(cov.shape[0]) * np.trace(cov) / cov.shape[0]
    cov = (1 - shrinkage) * cov + shrinkage * target
    return means, np.linalg.inv(cov)


def threshold_for_sensitivity(p_abnormal: np.ndarray, sensitivity: float = 0.98) -> float:
    """The largest t with mean(p_abnormal >= t) >= sensitivity over the abnormal cases given.

    Calling ``normal`` below t then misses at most (1 - sensitivity) of these abnormals.
    """
    s = np.sort(np.asarray(p_abnormal, np.float64))
    if len(s) == 0:
        raise ValueError("no abnormal cases to choose a threshold on")
    k = int(np.floor((1.0 - sensitivity) * len(s) + 1e-9))  # abnormals allowed below t
    return float(s[k])


def p_abnormal(probabilities: dict[str, float], normal_label: str) -> float:
    return float(1.0 - probabilities[normal_label])


def file_sha256(path: Path) -> str:
    """SHA-256 of a file, read in 1 MiB chunks (model files are megabytes)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_rule(card: dict[str, Any], models_dir: Path) -> CallRule | None:
    """The call rule of a card, or None for a card written before calls existed."""
    spec = card.get("call")
    if not spec:
        return None
    ood = None
    if spec.get("ood"):
        path = Path(models_dir) / spec["ood"]["file"]
        if not path.is_file():
            raise FileNotFoundError(f"near-OOD statistics {path} not found")
        if file_sha256(path) != spec["ood"]["sha256"]:
            raise ValueError(f"{path.name}: SHA-256 does not match its card")
        with np.load(path) as z:
            ood = OodRule(means=z["means"], precision=z["precision"],
                          threshold=float(spec["ood"]["threshold"]))
    return CallRule(normal_label=spec["normal_label"], normal_below=float(spec["normal_below"]),
                    abnormal_at=float(spec["abnormal_at"]), ood=ood)
