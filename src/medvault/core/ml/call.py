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
  conditions";
- ``indeterminate`` too when the image's intensity profile (the histogram of the model-input
  square, before any input mask) lies farther from the training images' than
  ``intensity.threshold`` (the mean distance to its k nearest training profiles, thresholded at
  a high percentile of the same distance on the internal validation split): another window,
  gamma or contrast than the training exports, which the embedding distance does not see
  (on the internal split rendered in a soft-tissue window the lung model is right on half the
  slices, and the embedding distance flags none of them).

The rule and its statistics live in the model card (``card["call"]``) and in a small ``.npz``
next to the ONNX file whose SHA-256 the card records. ``external/`` data is never used to fit
either.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

CALLS = ("abnormal", "normal", "indeterminate")
REASON_NORMAL = "probability of abnormal below the threshold chosen for sensitivity >= 0.98"
REASON_ABNORMAL = "confident abnormal"
REASON_UNSURE = "a tumour cannot be excluded; needs a radiologist's read"
REASON_OOD = "outside validated conditions"
REASON_INTENSITY = (f"{REASON_OOD}: the image's intensity profile (window, contrast) is unlike "
                    "the training images'")

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


def intensity_profile(square: np.ndarray, bins: int) -> np.ndarray:
    """uint8 model-input square -> the square root of its normalised grey-level histogram
    (``bins`` bins over 0-255), the near-black background (0-4: padding, air outside the body)
    left out. The Euclidean distance between two profiles is their Hellinger distance x sqrt 2."""
    v = np.asarray(square).ravel()
    fg = v[v > 4]
    if fg.size == 0:
        fg = v
    h = np.bincount((fg.astype(np.int64) * bins) // 256, minlength=bins).astype(np.float64)
    profile: np.ndarray = np.sqrt(h / h.sum())
    return profile


@dataclass(frozen=True)
class IntensityRule:
    """k-nearest-neighbour distance of the intensity profile to the training images'."""

    train: np.ndarray  # N x bins profiles of the training split
    k: int
    threshold: float

    @property
    def bins(self) -> int:
        return int(self.train.shape[1])

    @cached_property
    def _train64(self) -> tuple[np.ndarray, np.ndarray]:
        """The training profiles in float64 and their squared norms, once per loaded rule
        (not once per analysed image)."""
        t = np.asarray(self.train, np.float64)
        return t, (t * t).sum(1)

    def distances(self, profiles: np.ndarray) -> np.ndarray:
        """M x bins -> M: mean distance to the k nearest training profiles."""
        q = np.asarray(profiles, np.float64)
        t, t_sq = self._train64
        d2 = (q * q).sum(1)[:, None] + t_sq[None, :] - 2.0 * q @ t.T
        d = np.sqrt(np.maximum(d2, 0.0))
        k = min(self.k, d.shape[1])
        nearest: np.ndarray = np.partition(d, k - 1, axis=1)[:, :k].mean(axis=1)
        return nearest

    def distance(self, square: np.ndarray) -> float:
        return float(self.distances(intensity_profile(square, self.bins)[None])[0])


@dataclass(frozen=True)
class CallRule:
    normal_label: str
    normal_below: float
    abnormal_at: float
    ood: OodRule | None = None
    intensity: IntensityRule | None = None

    def decide(self, p_abnormal: float, ood_distance: float | None = None,
               intensity_distance: float | None = None) -> tuple[str, str]:
        """-> (call, reason)."""
        if (self.intensity is not None and intensity_distance is not None
                and intensity_distance > self.intensity.threshold):
            return "indeterminate", REASON_INTENSITY
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
    ood = intensity = None
    if spec.get("ood"):
        with _checked_npz(models_dir, spec["ood"]) as z:
            ood = OodRule(means=z["means"], precision=z["precision"],
                          threshold=float(spec["ood"]["threshold"]))
    if spec.get("intensity"):
        with _checked_npz(models_dir, spec["intensity"]) as z:
            intensity = IntensityRule(train=z["train"], k=int(spec["intensity"]["k"]),
                                      threshold=float(spec["intensity"]["threshold"]))
    return CallRule(normal_label=spec["normal_label"], normal_below=float(spec["normal_below"]),
                    abnormal_at=float(spec["abnormal_at"]), ood=ood, intensity=intensity)


def _checked_npz(models_dir: Path, spec: dict[str, Any]) -> Any:
    path = Path(models_dir) / spec["file"]
    if not path.is_file():
        raise FileNotFoundError(f"call-rule statistics {path} not found")
    if file_sha256(path) != spec["sha256"]:
        raise ValueError(f"{path.name}: SHA-256 does not match its card")
    return np.load(path)
