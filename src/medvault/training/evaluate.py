"""Metrics for the model cards (numpy only)."""

from __future__ import annotations

from typing import Any

import numpy as np


def softmax(logits: np.ndarray, t: float = 1.0) -> np.ndarray:
    z = logits / t
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    probs: np.ndarray = e / e.sum(axis=1, keepdims=True)
    return probs


def fit_temperature(logits: np.ndarray, y: np.ndarray) -> float:
    """Temperature minimising the NLL on (validation) logits: golden-section search on log T."""

    def nll(log_t: float) -> float:
        p = softmax(logits, float(np.exp(log_t)))
        return float(-np.mean(np.log(np.clip(p[np.arange(len(y)), y], 1e-12, None))))

    lo, hi = np.log(0.05), np.log(20.0)
    g = (np.sqrt(5) - 1) / 2
    a, b = hi - g * (hi - lo), lo + g * (hi - lo)
    fa, fb = nll(a), nll(b)
    for _ in range(80):
        if fa < fb:
            hi, b, fb = b, a, fa
            a = hi - g * (hi - lo)
            fa = nll(a)
        else:
            lo, a, fa = a, b, fb
            b = lo + g * (hi - lo)
            fb = nll(b)
    return float(np.exp((lo + hi) / 2))


def ece(probs: np.ndarray, y: np.ndarray, bins: int = 15) -> float:
    conf = probs.max(1)
    pred = probs.argmax(1)
    correct = (pred == y).astype(np.float64)
    edges = np.linspace(0, 1, bins + 1)
    total = 0.0
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        m = (conf > lo) & (conf <= hi)
        if m.any():
            total += m.mean() * abs(correct[m].mean() - conf[m].mean())
    return float(total)


def auroc(scores: np.ndarray, positive: np.ndarray) -> float | None:
    pos = scores[positive]
    neg = scores[~positive]
    if len(pos) == 0 or len(neg) == 0:
        return None
    order = np.argsort(np.concatenate([pos, neg]), kind="mergesort")
    allv = np.concatenate([pos, neg])[order]
    ranks = np.empty(len(allv))
    # average ranks for ties
    i = 0
    while i < len(allv):
        j = i
        while j + 1 < len(allv) and allv[j + 1] == allv[i]:
            j += 1
        ranks[i : j + 1] = (i + j) / 2 + 1
        i = j + 1
    r = np.empty(len(allv))
    r[order] = ranks
    rpos = r[: len(pos)].sum()
    return float((rpos - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def classification_report(probs: np.ndarray, y: np.ndarray, labels: list[str]) -> dict[str, Any]:
    pred = probs.argmax(1)
    k = len(labels)
    cm = np.zeros((k, k), np.int64)
    for t, p in zip(y, pred, strict=True):
        cm[t, p] += 1
    per = {}
    f1s = []
    for i, lab in enumerate(labels):
        tp = cm[i, i]
        rec = tp / cm[i].sum() if cm[i].sum() else 0.0
        prec = tp / cm[:, i].sum() if cm[:, i].sum() else 0.0
        f1 = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
        f1s.append(f1)
        per[lab] = {"recall": round(float(rec), 4), "precision": round(float(prec), 4),
                    "f1": round(float(f1), 4), "support": int(cm[i].sum()),
                    "auroc_one_vs_rest": _r(auroc(probs[:, i], y == i))}
    return {
        "n": int(len(y)),
        "accuracy": round(float((pred == y).mean()), 4),
        "macro_f1": round(float(np.mean(f1s)), 4),
        "per_class": per,
        "confusion_matrix": {"rows_true_cols_predicted": labels, "matrix": cm.tolist()},
        "ece_15_bins": round(ece(probs, y), 4),
    }


def _r(v: float | None) -> float | None:
    return None if v is None else round(v, 4)


def retrieval_metrics(q_emb: np.ndarray, q_y: np.ndarray, a_emb: np.ndarray, a_y: np.ndarray,
                      ks: tuple[int, ...] = (1, 5, 10)) -> dict[str, Any]:
    """Queries (validation) against an archive (training); relevant = same class."""
    sim = q_emb @ a_emb.T
    top = np.argsort(-sim, axis=1, kind="stable")[:, : max(ks)]
    rel = a_y[top] == q_y[:, None]
    out = {f"precision@{k}": round(float(rel[:, :k].mean()), 4) for k in ks}
    kmax = max(ks)
    cum = np.cumsum(rel, axis=1)
    prec_at = cum / np.arange(1, kmax + 1)
    denom = np.maximum(rel.sum(1), 1)
    out[f"map@{kmax}"] = round(float(((prec_at * rel).sum(1) / denom).mean()), 4)
    out["queries"] = int(len(q_y))
    out["archive"] = int(len(a_y))
    return out
