"""Datasets for training: manifest reading, pixel cache, duplicate grouping and leakage-free split."""

from __future__ import annotations

import csv
import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypedDict

import numpy as np
from PIL import Image

from medvault.core.ml.preprocess import prepare_gray

SEED = 1337
STORE_SIZE = 128  # cached resolution; the nets are trained at this or a smaller size
THUMB = 16  # near-duplicate thumbnails
NEAR_DUP_COSINE = 0.999


class DatasetSpec(TypedDict):
    folder: str
    labels: list[str]
    val_fraction: float


DATASETS: dict[str, DatasetSpec] = {
    "lung-ct": {
        "folder": "chest_ct",
        "labels": ["adenocarcinoma", "large_cell_carcinoma", "squamous_cell_carcinoma", "normal"],
        "val_fraction": 0.2,
    },
    "brain-mri": {
        "folder": "brain_mri",
        "labels": ["glioma", "meningioma", "pituitary", "notumor"],
        "val_fraction": 0.2,
    },
}


def default_data_dir() -> Path:
    # <repo>/src/medvault/training/data.py -> <repo>/../shared/data (override: MEDVAULT_SHARED_DATA)
    import os

    env = os.environ.get("MEDVAULT_SHARED_DATA")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[3].parent / "shared" / "data"


@dataclass
class Prepared:
    name: str
    labels: list[str]
    paths: list[str]
    y: np.ndarray  # int64 label index per kept image
    x: np.ndarray  # uint8 N x S x S
    split: np.ndarray  # "train" | "val"
    group: np.ndarray  # duplicate-group id per kept image
    report: dict[str, Any] = field(default_factory=dict)


class _UnionFind:
    def __init__(self, n: int) -> None:
        self.parent = list(range(n))

    def find(self, a: int) -> int:
        while self.parent[a] != a:
            self.parent[a] = self.parent[self.parent[a]]
            a = self.parent[a]
        return a

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def read_manifest(folder: Path) -> list[dict[str, str]]:
    with open(folder / "manifest.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    rows.sort(key=lambda r: r["path"])
    return rows


def load_uint8(path: Path) -> np.ndarray:
    with Image.open(path) as opened:
        opened.load()
        im: Image.Image = opened
        if im.mode not in ("L", "RGB"):
            im = im.convert("RGB") if im.mode in ("RGBA", "P", "CMYK", "LA") else im.convert("L")
        return np.asarray(im)


def manifest_hash(rows: list[dict[str, str]]) -> str:
    h = hashlib.sha256()
    for r in rows:
        h.update(f"{r['path']}\t{r['label']}\t{r['sha256']}\n".encode())
    return h.hexdigest()


def _cache_images(name: str, folder: Path, rows: list[dict[str, str]], cache_dir: Path,
                  size: int = STORE_SIZE) -> dict[str, Any]:
    key = manifest_hash(rows)[:16]
    cache = cache_dir / f"{name}-{size}-{key}.npz"
    if cache.exists():
        d = np.load(cache)
        return {"x": d["x"], "thumb": d["thumb"]}
    xs = np.zeros((len(rows), size, size), np.uint8)
    thumbs = np.zeros((len(rows), THUMB * THUMB), np.float32)
    for i, r in enumerate(rows):
        img = load_uint8(folder / r["path"])
        xs[i], _ = prepare_gray(img, size)
        t = np.asarray(Image.fromarray(prepare_gray(img, 128)[0]).resize(
            (THUMB, THUMB), Image.Resampling.BOX))
        thumbs[i] = t.astype(np.float32).ravel()
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(".tmp.npz")
    np.savez(tmp, x=xs, thumb=thumbs)
    tmp.replace(cache)
    return {"x": xs, "thumb": thumbs}


def near_duplicate_pairs(thumbs: np.ndarray, threshold: float = NEAR_DUP_COSINE) -> list[tuple[int, int]]:
    v = thumbs / np.maximum(np.linalg.norm(thumbs, axis=1, keepdims=True), 1e-6)
    pairs: list[tuple[int, int]] = []
    for start in range(0, len(v), 1024):
        sim = v[start : start + 1024] @ v.T
        ii, jj = np.nonzero(sim >= threshold)
        for i, j in zip(ii + start, jj, strict=True):
            if i < j:
                pairs.append((int(i), int(j)))
    return pairs


def prepare(name: str, data_dir: Path | None = None, cache_dir: Path | None = None,
            limit_per_class: int | None = None, size: int = STORE_SIZE) -> Prepared:
    """Load, group duplicates (exact + near), drop label conflicts and extra copies, split."""
    spec = DATASETS[name]
    data_dir = data_dir or default_data_dir()
    folder = data_dir / spec["folder"]
    cache_dir = cache_dir or Path("var/ml/cache")
    labels: list[str] = list(spec["labels"])
    t0 = time.time()
    rows = read_manifest(folder)
    if limit_per_class is not None:  # smoke tests: a small, fixed subset
        taken: dict[str, int] = {}
        sub = []
        for r in rows:
            if taken.get(r["label"], 0) < limit_per_class:
                taken[r["label"]] = taken.get(r["label"], 0) + 1
                sub.append(r)
        rows = sub
    cached = _cache_images(name, folder, rows, cache_dir, size)
    n = len(rows)
    uf = _UnionFind(n)
    by_exact: dict[str, int] = {}
    exact_links = 0
    for i, r in enumerate(rows):
        g = r.get("exact_dup_group", "")
        if g:
            if g in by_exact:
                uf.union(by_exact[g], i)
                exact_links += 1
            else:
                by_exact[g] = i
    # also identical file hashes (in case a group id is missing)
    by_sha: dict[str, int] = {}
    for i, r in enumerate(rows):
        if r["sha256"] in by_sha:
            uf.union(by_sha[r["sha256"]], i)
        else:
            by_sha[r["sha256"]] = i
    # exact copies (same exact_dup_group or identical file): keep one, drop the rest
    exact_root = [uf.find(i) for i in range(n)]
    near = near_duplicate_pairs(cached["thumb"])
    near_new = 0
    for i, j in near:
        if uf.find(i) != uf.find(j):
            near_new += 1
        uf.union(i, j)
    groups: dict[int, list[int]] = {}
    for i in range(n):
        groups.setdefault(uf.find(i), []).append(i)
    keep: list[int] = []
    conflicts: list[list[str]] = []
    dup_dropped = 0
    kept_groups: list[tuple[int, list[int]]] = []
    for root, members in sorted(groups.items()):
        labs = {rows[m]["label"] for m in members}
        if len(labs) > 1:
            # a label conflict (same image under two labels): drop every member
            conflicts.append([rows[m]["path"] for m in members])
            continue
        seen_exact: set[int] = set()
        kept_members = []
        for m in members:
            if exact_root[m] in seen_exact:
                dup_dropped += 1  # an exact copy of an image already kept
                continue
            seen_exact.add(exact_root[m])
            kept_members.append(m)
        keep.extend(kept_members)
        kept_groups.append((root, kept_members))
    keep.sort()
    rng = np.random.default_rng(SEED)
    # stratified split over whole groups (near-duplicates never straddle the split)
    split: dict[int, str] = {}
    for lab in labels:
        lab_groups = [g for g in kept_groups if rows[g[1][0]]["label"] == lab]
        order = rng.permutation(len(lab_groups))
        total = sum(len(g[1]) for g in lab_groups)
        target = total * spec["val_fraction"]
        in_val = 0
        for k in order:
            members = lab_groups[k][1]
            side = "val" if in_val < target else "train"
            if side == "val":
                in_val += len(members)
            for m in members:
                split[m] = side
    x = cached["x"][keep]
    y = np.array([labels.index(rows[i]["label"]) for i in keep], np.int64)
    report = {
        "dataset": spec["folder"],
        "manifest_sha256": manifest_hash(rows),
        "files": n,
        "exact_duplicate_links": exact_links,
        "near_duplicate_pairs": len(near),
        "near_duplicate_links_beyond_exact": near_new,
        "near_duplicate_rule": f"cosine >= {NEAR_DUP_COSINE} on {THUMB}x{THUMB} thumbnails of the "
                               "padded image; groups = union-find over exact groups, identical "
                               "SHA-256 and near-duplicate pairs",
        "duplicate_groups": sum(1 for m in groups.values() if len(m) > 1),
        "files_in_duplicate_groups": sum(len(m) for m in groups.values() if len(m) > 1),
        "exact_duplicates_dropped": dup_dropped,
        "near_duplicates_kept_grouped": "near-duplicates that are not exact copies are kept, but "
                                        "every group sits wholly on one side of the split",
        "label_conflict_groups": len(conflicts),
        "label_conflict_files_dropped": sum(len(c) for c in conflicts),
        "label_conflicts": conflicts[:20],
        "kept": len(keep),
        "split_seed": SEED,
        "train": int(sum(1 for i in keep if split[i] == "train")),
        "val": int(sum(1 for i in keep if split[i] == "val")),
        "per_class": {lab: {s: int(sum(1 for i in keep if rows[i]["label"] == lab
                                       and split[i] == s)) for s in ("train", "val")}
                      for lab in labels},
        "original_splits_pooled": sorted({r["split"] for r in rows}),
        "prepare_seconds": round(time.time() - t0, 1),
    }
    return Prepared(
        name=name, labels=labels, paths=[rows[i]["path"] for i in keep], y=y, x=x,
        split=np.array([split[i] for i in keep]), group=np.array([uf.find(i) for i in keep]),
        report=report,
    )


if __name__ == "__main__":  # pragma: no cover - manual inspection
    import sys

    p = prepare(sys.argv[1])
    print(json.dumps(p.report, indent=1))
