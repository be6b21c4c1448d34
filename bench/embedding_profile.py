"""What real embeddings look like, so that the vector-search benchmark can imitate them.

Embeds every image of the shared labelled sets with the shipped models (the same
``medvault.core.ml.analyse`` call as ingest: domain gate, preprocessing, projection head,
L2 normalisation; refused images are left out), then measures per model:

- the spectrum of the embeddings (PCA eigenvalues) and its participation ratio
  PR = (sum l)^2 / sum l^2, the usual "effective number of dimensions";
- the split of the variance between classes (class means) and within classes (pooled
  within-class covariance), and the within-class participation ratio;
- the local intrinsic dimensionality (LID, maximum-likelihood estimate over the 20 nearest
  neighbours; the measure ANN benchmarks use for query difficulty) and the relative contrast
  (mean similarity / similarity of the 10th neighbour, in distance terms) of held-out queries.

It writes ``bench/data/embedding_profile.npz``: per model, the class means, class weights
and the pooled within-class covariance. ``bench/vector_search.py --data matched`` samples
from that class-conditional Gaussian model (the generative model of linear discriminant
analysis: no tuned parameters) and normalises. Nothing derived here identifies an image.

Then, as a check of the generator, the same statistics are computed for synthetic sets
of the same size from the matched generator and from the old isotropic one, and HNSW
recall@10 (default parameters) against exact search on the real embeddings themselves
(queries: held-out real images that are not in the index).

    .venv/bin/python bench/embedding_profile.py [--data /work/shared/data] [--limit N]

Prints a summary and, as its last line, one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))

SETS = {"brain-mri": "brain_mri", "lung-ct": "chest_ct"}
PROFILE = ROOT / "bench" / "data" / "embedding_profile.npz"


def embed(model_name: str, data_dir: Path, limit: int) -> tuple[np.ndarray, list[str], int]:
    from PIL import Image

    from medvault.core.ml import analyse, load_model

    model = load_model(model_name, ROOT / "models")
    folder = data_dir / SETS[model_name]
    rows = [line.split(",") for line in (folder / "manifest.csv").read_text().splitlines()[1:]]
    if limit:
        rows = rows[::max(1, len(rows) // limit)][:limit]
    vectors, labels, refused = [], [], 0
    for row in rows:
        path, label = row[0], row[2]
        with Image.open(folder / path) as im:
            arr = np.asarray(im.convert("RGB") if im.mode not in ("L", "RGB") else im)
        out = analyse(model, arr)
        if out.refused or out.embedding is None:
            refused += 1
            continue
        vectors.append(out.embedding.astype(np.float32))
        labels.append(label)
    return np.vstack(vectors), labels, refused


def participation_ratio(eig: np.ndarray) -> float:
    eig = np.clip(eig, 0, None)
    return float(eig.sum() ** 2 / (eig ** 2).sum())


def neighbour_stats(base: np.ndarray, queries: np.ndarray, k: int = 20) -> dict:
    """LID (MLE over k neighbours, Levina-Bickel / Amsaleg et al.) and relative contrast."""
    sims = queries @ base.T
    dist = np.sqrt(np.clip(2 - 2 * sims, 1e-12, None))  # unit vectors: Euclidean distance
    part = np.sort(np.partition(dist, k, axis=1)[:, :k], axis=1)
    lid = -1.0 / np.mean(np.log(part[:, :-1] / part[:, -1:]), axis=1)
    rc = dist.mean(axis=1) / part[:, 9]
    return {"lid_median": round(float(np.median(lid)), 1), "lid_mean": round(float(np.mean(lid)), 1),
            "relative_contrast_at_10_median": round(float(np.median(rc)), 3),
            "nn1_cosine_median": round(float(np.median(1 - part[:, 0] ** 2 / 2)), 4),
            "nn10_cosine_median": round(float(np.median(1 - part[:, 9] ** 2 / 2)), 4)}


def hnsw_recall(base: np.ndarray, queries: np.ndarray) -> dict:
    """recall@10 of HNSW (default parameters) against exact search, as the archive runs it
    (vectors stored as float16, the graph in float16; the oracle searches the same stored
    vectors), and against exact search on the float32 originals (before storage rounding)."""
    from medvault.core.search import ExactIndex, HnswIndex, HnswParams

    keys = np.arange(base.shape[0])
    stored = base.astype(np.float16).astype(np.float32)
    out = {"index": base.shape[0], "queries": len(queries)}
    truths = {}
    for name, vectors in (("stored_f16", stored), ("float32_originals", base)):
        exact = ExactIndex(base.shape[1])
        exact.add(keys, vectors)
        truths[name] = [set(exact.search(q, 10).keys.tolist()) for q in queries]
    hnsw = HnswIndex(base.shape[1], HnswParams(dtype="f16"))
    hnsw.add(keys, stored)
    found = [set(hnsw.search(q, 10).keys.tolist()) for q in queries]
    for name, truth in truths.items():
        out[f"recall@10_vs_exact_on_{name}"] = round(
            sum(len(t & f) for t, f in zip(truth, found, strict=True)) / (10 * len(queries)), 4)
    out["exact_stored_f16_vs_exact_float32_originals"] = round(
        sum(len(a & b) for a, b in zip(truths["stored_f16"], truths["float32_originals"], strict=True))
        / (10 * len(queries)), 4)
    s = np.sort(queries @ base.T, axis=1)[:, ::-1]
    out["cosine_gap_1st_to_10th_median"] = float(f"{np.median(s[:, 0] - s[:, 9]):.2g}")
    out["cosine_gap_10th_to_11th_median"] = float(f"{np.median(s[:, 9] - s[:, 10]):.2g}")
    return out


def profile(vectors: np.ndarray, labels: list[str]) -> dict:
    classes = sorted(set(labels))
    lab = np.array(labels)
    mean = vectors.mean(axis=0)
    total_cov = np.cov(vectors, rowvar=False)
    means = np.vstack([vectors[lab == c].mean(axis=0) for c in classes])
    weights = np.array([(lab == c).mean() for c in classes])
    centred = vectors - means[np.searchsorted(classes, lab)]
    within = centred.T @ centred / (len(vectors) - len(classes))
    eig_total = np.linalg.eigvalsh(total_cov)[::-1]
    eig_within = np.linalg.eigvalsh(within)[::-1]
    between_var = float(np.sum(weights[:, None] * (means - mean) ** 2))
    return {
        "classes": classes, "weights": weights, "means": means, "within": within,
        "summary": {
            "images": len(vectors), "classes": dict(zip(classes, [int((lab == c).sum()) for c in classes],
                                                         strict=True)),
            "mean_vector_norm": round(float(np.linalg.norm(mean)), 3),
            "total_variance": round(float(eig_total.sum()), 4),
            "between_class_variance": round(between_var, 4),
            "within_class_variance": round(float(eig_within.sum()), 4),
            "participation_ratio_total": round(participation_ratio(eig_total), 1),
            "participation_ratio_within": round(participation_ratio(eig_within), 1),
            "dims_for_90pct_within_variance": int(np.searchsorted(np.cumsum(eig_within) / eig_within.sum(), 0.9) + 1),
            "eigenvalues_within_top10": [round(float(x), 5) for x in eig_within[:10]],
        },
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--limit", type=int, default=0, help="at most this many images per model (0 = all)")
    ap.add_argument("--no-write", action="store_true", help="do not rewrite the profile file")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--save-embeddings", type=Path, default=None,
                    help="also save the real embeddings and labels to this folder (never commit them)")
    args = ap.parse_args()
    if not args.data.is_dir():
        sys.exit(f"{args.data} not found: the profile needs the shared labelled images")

    import vector_search as vs

    print(f"# embedding profile: load average {os.getloadavg()}")
    arrays: dict[str, np.ndarray] = {}
    report: dict = {"load_average_at_start": os.getloadavg(), "models": {}}
    rng = np.random.default_rng(args.seed)
    for name in SETS:
        t = time.perf_counter()
        vectors, labels, refused = embed(name, args.data, args.limit)
        embed_s = time.perf_counter() - t
        if args.save_embeddings:
            args.save_embeddings.mkdir(parents=True, exist_ok=True)
            np.save(args.save_embeddings / f"{name}.npy", vectors)
            (args.save_embeddings / f"{name}.labels").write_text("\n".join(labels))
        p = profile(vectors, labels)
        summary = p["summary"] | {"refused": refused, "embed_s": round(embed_s, 1)}
        for key in ("weights", "means", "within"):
            arrays[f"{name}/{key}"] = np.asarray(p[key], dtype=np.float32)
        arrays[f"{name}/classes"] = np.array(p["classes"])

        # Held-out real queries (not in the index) against the rest; synthetic sets of the
        # same size from the matched and the isotropic generators, for comparison.
        order = rng.permutation(len(vectors))
        nq = min(500, len(vectors) // 5)
        base, queries = vectors[order[nq:]], vectors[order[:nq]]
        gen = vs.MatchedGenerator({k.split("/", 1)[1]: v for k, v in arrays.items() if k.startswith(name + "/")})
        syn_base, syn_q = gen.sample(len(base), rng), gen.sample(nq, rng)
        syn_eig = np.linalg.eigvalsh(np.cov(syn_base, rowvar=False))[::-1]
        iso_base = vs.clustered(len(base), vectors.shape[1], rng, clusters=max(100, len(base) // 1000))
        iso_q = iso_base[rng.integers(0, len(iso_base), nq)] + 0.1 * rng.normal(size=(nq, vectors.shape[1]))
        iso_q = (iso_q / np.linalg.norm(iso_q, axis=1, keepdims=True)).astype(np.float32)
        iso_eig = np.linalg.eigvalsh(np.cov(iso_base, rowvar=False))[::-1]
        summary["same_size_comparison"] = {
            "real": neighbour_stats(base, queries) | {
                "participation_ratio_total": summary["participation_ratio_total"],
                "hnsw_default": hnsw_recall(base, queries)},
            "matched_synthetic": neighbour_stats(syn_base, syn_q) | {
                "participation_ratio_total": round(participation_ratio(syn_eig), 1),
                "hnsw_default": hnsw_recall(syn_base, syn_q)},
            "isotropic_synthetic": neighbour_stats(iso_base, iso_q) | {
                "participation_ratio_total": round(participation_ratio(iso_eig), 1),
                "hnsw_default": hnsw_recall(iso_base, iso_q)},
        }
        report["models"][name] = summary
        print(f"\n## {name}: {summary['images']} images embedded ({refused} refused) in {summary['embed_s']} s")
        print(json.dumps(summary, indent=1))
        sys.stdout.flush()
    if not args.no_write:
        PROFILE.parent.mkdir(exist_ok=True)
        np.savez_compressed(PROFILE, **arrays)
        print(f"wrote {PROFILE.relative_to(ROOT)}")
    print(json.dumps(report))


if __name__ == "__main__":
    main()
