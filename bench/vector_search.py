"""Vector-search benchmark: exact numpy vs usearch HNSW, and the whole /api/v1/similar call.

In one run, for each size (default 100k and 1M) of synthetic unit vectors:
build time and memory, single-thread query latency p50/p95, recall@10 against exact search
(the baseline measured in the same run), for several efSearch values. Then, unless
``--skip-api``, the whole ``POST /api/v1/similar`` request on a temporary archive of 10k
instances with synthetic embeddings in a temporary SQLite database.

    .venv/bin/python bench/vector_search.py                 # 100k and 1M, dim from the model card or 128
    .venv/bin/python bench/vector_search.py --sizes 100000 --dim 64 --skip-api --data isotropic

Data (``--data``):

- ``matched`` (default): vectors sampled from a class-conditional Gaussian fitted to the
  shipped models' embeddings of the real images (``bench/embedding_profile.py`` writes
  ``bench/data/embedding_profile.npz``; ``--profile`` picks the model). Queries are fresh
  samples from the same model: new images, not stored vectors.
- ``isotropic``: the earlier stress case: noise of 0.35 per dimension around random
  centres (full intrinsic dimension 128), queries = stored vectors plus noise 0.1 per
  dimension. Much harder than real embeddings; kept to show the index's worst case.

Prints a Markdown table and, as its last line, one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

# One thread for the exact baseline: the comparison is single-thread latency.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from medvault.core.search import ExactIndex, HnswIndex, HnswParams  # noqa: E402


def model_dim(default: int = 128) -> int:
    """The embedding dimension from a shipped model card, if there is one."""
    for card in sorted((ROOT / "models").glob("*.json")):
        try:
            data = json.loads(card.read_text())
        except (OSError, ValueError):
            continue
        for key in ("embedding_dim", "embedding_dimension"):
            if isinstance(data.get(key), int):
                return int(data[key])
        spec = data.get("output_spec") or data.get("outputs") or {}
        if isinstance(spec, dict) and isinstance(spec.get("embedding_dim"), int):
            return int(spec["embedding_dim"])
    return default


def clustered(n: int, dim: int, rng: np.random.Generator, clusters: int) -> np.ndarray:
    centres = rng.normal(size=(clusters, dim)).astype(np.float32)
    out = np.empty((n, dim), dtype=np.float32)
    step = 100_000
    for start in range(0, n, step):
        m = min(step, n - start)
        block = centres[rng.integers(0, clusters, m)] + 0.35 * rng.normal(size=(m, dim)).astype(np.float32)
        out[start:start + m] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return out


PROFILE = ROOT / "bench" / "data" / "embedding_profile.npz"


class MatchedGenerator:
    """Vectors like the shipped models' embeddings of real images.

    A class-conditional Gaussian (the generative model of linear discriminant analysis)
    fitted by ``bench/embedding_profile.py`` to the real embeddings: class ``c`` with
    probability ``weights[c]``, then ``means[c]`` plus Gaussian noise with the pooled
    within-class covariance, then L2 normalisation (as the models do). The spectrum,
    the between/within-class split and the class structure are the measured ones; nothing
    here is a free parameter. Queries are fresh samples (new images, not in the archive).
    """

    def __init__(self, arrays: dict) -> None:
        self.weights = np.asarray(arrays["weights"], dtype=np.float64)
        self.weights /= self.weights.sum()
        self.means = np.asarray(arrays["means"], dtype=np.float32)
        within = np.asarray(arrays["within"], dtype=np.float64)
        vals, vecs = np.linalg.eigh((within + within.T) / 2)
        self.factor = (vecs * np.sqrt(np.clip(vals, 0, None))).astype(np.float32)  # within = F F^T
        self.dim = self.means.shape[1]

    @classmethod
    def load(cls, model: str, path: Path = PROFILE) -> MatchedGenerator:
        with np.load(path) as npz:
            return cls({key: npz[f"{model}/{key}"] for key in ("weights", "means", "within")})

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        out = np.empty((n, self.dim), dtype=np.float32)
        step = 100_000
        for start in range(0, n, step):
            m = min(step, n - start)
            cls = rng.choice(len(self.weights), size=m, p=self.weights)
            block = self.means[cls] + rng.standard_normal(size=(m, self.dim), dtype=np.float32) @ self.factor.T
            out[start:start + m] = block / np.linalg.norm(block, axis=1, keepdims=True)
        return out


def make_data(kind: str, n: int, n_queries: int, dim: int, rng: np.random.Generator,
              profile: str) -> tuple[np.ndarray, np.ndarray]:
    """(stored vectors, queries) for one benchmark size."""
    if kind == "matched":
        gen = MatchedGenerator.load(profile)
        if gen.dim != dim:
            raise SystemExit(f"the {profile} profile has dimension {gen.dim}, not {dim}")
        return gen.sample(n, rng), gen.sample(n_queries, rng)
    # "isotropic": the earlier stress case. Isotropic noise 0.35 per dimension around
    # N(0, 1) centres fills all dimensions; queries are stored vectors plus noise 0.1
    # per dimension (a noise norm of about 1.1 on unit vectors).
    data = clustered(n, dim, rng, clusters=max(100, n // 1000))
    pick = rng.integers(0, n, n_queries)
    queries = data[pick] + 0.1 * rng.normal(size=(n_queries, dim)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    return data, queries


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def percentiles(values_ms: list[float]) -> tuple[float, float]:
    return float(np.percentile(values_ms, 50)), float(np.percentile(values_ms, 95))


def bench_size(n: int, dim: int, n_queries: int, efs: list[int], params: HnswParams,
               build_threads: int, seed: int, data_kind: str = "matched", profile: str = "brain-mri",
               stored_dtype: str = "f16", oracle_only: bool = False) -> dict:
    rng = np.random.default_rng(seed)
    t0 = time.perf_counter()
    data, queries = make_data(data_kind, n, n_queries, dim, rng, profile)
    gen_s = time.perf_counter() - t0
    keys = np.arange(n, dtype=np.int64)

    # What the archive stores: embeddings are kept in the database as float16
    # (MEDVAULT_EMBEDDING_DTYPE), and every server builds its index from those rows. The
    # exact oracle searches the same stored vectors; recall against the float32 originals
    # (before storage rounding) is reported too.
    original = data
    if stored_dtype == "f16":
        data = data.astype(np.float16).astype(np.float32)

    # Exact baseline (float32 arithmetic, one thread): latency on a sample, ground truth for all queries.
    exact = ExactIndex(dim)
    exact.add(keys, data)
    lat = []
    for q in queries[: min(100, n_queries)]:
        t = time.perf_counter()
        exact.search(q, 10)
        lat.append((time.perf_counter() - t) * 1000)
    exact_p50, exact_p95 = percentiles(lat)
    del exact

    def top10(base: np.ndarray) -> np.ndarray:
        out = np.empty((n_queries, 10), dtype=np.int64)
        for start in range(0, n_queries, 100):
            scores = queries[start:start + 100] @ base.T
            out[start:start + 100] = np.argpartition(-scores, 9, axis=1)[:, :10]
        return out

    truth = top10(data)
    truth_original = top10(original) if original is not data else truth
    # Threshold-free view of the misses: how much lower is the mean true (float32) cosine
    # of the 10 returned vectors than that of the exact float32 top 10? Near zero when the
    # misses are ties below the storage precision.
    best_original = np.einsum("qkd,qd->q", original[truth_original], queries) / 10
    # The oracle itself: exact search on the stored vectors against the float32 originals.
    # No index can agree with the originals better than this, whatever its parameters.
    scores_sorted = -np.sort(np.partition(-(queries[:200] @ original.T), 10, axis=1)[:, :11], axis=1)
    oracle = {
        "recall@10_vs_float32_originals": round(
            float(
                np.mean(
                    [len(set(a.tolist()) & set(b.tolist())) / 10 for a, b in zip(truth, truth_original, strict=True)]
                )
            ),
            4,
        ),
        "mean_cosine_deficit_vs_float32_top10": float(
            f"{np.mean(best_original - np.einsum('qkd,qd->q', original[truth], queries) / 10):.2g}"
        ),
        "cosine_gap_1st_to_10th_median": float(f"{np.median(scores_sorted[:, 0] - scores_sorted[:, 9]):.2g}"),
        "cosine_gap_10th_to_11th_median": float(f"{np.median(scores_sorted[:, 9] - scores_sorted[:, 10]):.2g}"),
    }
    if oracle_only:
        return {"n": n, "dim": dim, "stored_dtype": stored_dtype,
                "data": data_kind if data_kind == "isotropic" else f"matched:{profile}", "queries": n_queries,
                "exact_p50_ms": round(exact_p50, 3), "exact_stored_vs_float32": oracle}

    rss0 = rss_mb()
    index = HnswIndex(dim, params)
    t = time.perf_counter()
    index.add(keys, data, threads=build_threads)
    build_s = time.perf_counter() - t
    mem_mb = index._index.memory_usage / 1e6  # noqa: SLF001 - benchmark looks inside
    rss_growth = rss_mb() - rss0

    rows = []
    for ef in efs:
        index._index.expansion_search = ef  # noqa: SLF001
        lat, hits, hits_original, deficit = [], 0, 0, []
        for i, q in enumerate(queries):
            t = time.perf_counter()
            res = index._index.search(q, 10, threads=1)  # noqa: SLF001 - raw call, no wrapper cost
            lat.append((time.perf_counter() - t) * 1000)
            found = set(np.asarray(res.keys, dtype=np.int64).tolist())
            hits += len(found & set(truth[i].tolist()))
            hits_original += len(found & set(truth_original[i].tolist()))
            got = np.asarray(res.keys, dtype=np.int64)
            deficit.append(best_original[i] - float((original[got] @ q).sum()) / 10 if got.size == 10 else np.nan)
        p50, p95 = percentiles(lat)
        rows.append({"ef_search": ef, "p50_ms": round(p50, 4), "p95_ms": round(p95, 4),
                     "recall@10": round(hits / (10 * n_queries), 4),
                     "recall@10_vs_float32_originals": round(hits_original / (10 * n_queries), 4),
                     "mean_cosine_deficit_vs_float32_top10": float(f"{np.nanmean(deficit):.2g}"),
                     "speedup_vs_exact_p50": round(exact_p50 / p50, 1)})

    del original
    # Filtered search through the public method (10 % and 0.1 % of keys allowed).
    index._index.expansion_search = params.expansion_search  # noqa: SLF001
    filtered = {}
    for frac in (0.1, 0.001):
        allowed = np.sort(rng.choice(keys, size=max(10, int(n * frac)), replace=False))
        lat, hits = [], 0
        for q in queries[:200]:
            t = time.perf_counter()
            res = index.search(q, 10, allowed=allowed)
            lat.append((time.perf_counter() - t) * 1000)
            sub = allowed
            truth_f = sub[np.argsort(-(data[sub] @ q))[:10]]
            hits += len(set(res.keys.tolist()) & set(truth_f.tolist()))
        p50, p95 = percentiles(lat)
        filtered[f"{frac:g}"] = {"p50_ms": round(p50, 4), "p95_ms": round(p95, 4),
                                 "recall@10": round(hits / (10 * min(200, n_queries)), 4), "method": res.method}

    # Persistence: save and load time.
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.usearch"
        t = time.perf_counter()
        index.save(path)
        save_s = time.perf_counter() - t
        size_mb = path.stat().st_size / 1e6
        t = time.perf_counter()
        HnswIndex.load(path, params)
        load_s = time.perf_counter() - t

    return {
        "n": n,
        "dim": dim,
        "stored_dtype": stored_dtype,
        "data": data_kind if data_kind == "isotropic" else f"matched:{profile}",
        "queries": n_queries,
        "generate_s": round(gen_s, 1),
        "exact_p50_ms": round(exact_p50, 3),
        "exact_p95_ms": round(exact_p95, 3),
        "exact_stored_vs_float32": oracle,
        "build_s": round(build_s, 1),
        "build_threads": build_threads,
        "index_memory_mb": round(mem_mb, 1),
        "rss_growth_mb": round(rss_growth, 1),
        "file_mb": round(size_mb, 1),
        "save_s": round(save_s, 2),
        "load_s": round(load_s, 2),
        "hnsw": rows,
        "filtered": filtered,
    }


def bench_api(n: int, dim: int, requests: int, data_kind: str = "matched", profile: str = "brain-mri") -> dict:
    """The whole POST /api/v1/similar on a temporary archive of ``n`` instances."""
    tmp = tempfile.mkdtemp(prefix="mv-bench-")
    os.environ["MEDVAULT_DATA_DIR"] = tmp
    os.environ["DATABASE_URL"] = f"sqlite:///{tmp}/bench.sqlite3"
    os.environ["MEDVAULT_SECRET_KEY"] = "bench-" + "x" * 40
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "medvault.web.settings")
    os.environ["MEDVAULT_ALLOWED_HOSTS"] = "testserver,localhost"
    import django

    django.setup()
    from django.contrib.auth.models import Group
    from django.core.management import call_command
    from django.test import Client

    from medvault.accounts.models import User
    from medvault.accounts.tokens import token_create
    from medvault.archive.models import Instance, Patient, Series, Study
    from medvault.core.search import vector_encode
    from medvault.retrieval.models import Embedding

    call_command("migrate", verbosity=0)
    t = time.perf_counter()
    groups = [Group.objects.create(name=f"Site {i}") for i in range(4)]
    rng = np.random.default_rng(5)
    vectors = (MatchedGenerator.load(profile).sample(n, rng) if data_kind == "matched"
               else clustered(n, dim, rng, clusters=40))
    labels = ["adenocarcinoma", "large_cell_carcinoma", "squamous_cell_carcinoma", "normal"]
    patients = Patient.objects.bulk_create(
        [Patient(patient_id=f"B{i:06d}", patient_name=f"Bench^{i}") for i in range(n // 10)])
    studies = Study.objects.bulk_create([
        Study(study_instance_uid=f"2.25.9{i}.1", patient=patients[i], group=groups[i % 4],
              study_date="2024-01-01", modalities_in_study="CT") for i in range(n // 10)])
    series = Series.objects.bulk_create([
        Series(series_instance_uid=f"2.25.9{i}.2", study=studies[i], modality="CT",
               body_part_examined="CHEST") for i in range(n // 10)])
    instances = Instance.objects.bulk_create([
        Instance(sop_instance_uid=f"2.25.9{i}.3", series=series[i // 10],
                 sop_class_uid="1.2.840.10008.5.1.4.1.1.2", received_transfer_syntax_uid="1.2.840.10008.1.2.1",
                 transfer_syntax_uid="1.2.840.10008.1.2.1", blob_key=f"{i:064x}", content_sha256="0" * 64,
                 received_bytes=0, stored_bytes=0, metadata={}, source="bench") for i in range(n)],
        batch_size=2000)
    Embedding.objects.bulk_create([
        Embedding(instance=instances[i], model_name="lung-ct", model_version="bench", dim=dim,
                  dtype="f16", vector=vector_encode(vectors[i]), label=labels[i % 4]) for i in range(n)],
        batch_size=2000)
    fill_s = time.perf_counter() - t
    clinician = User.objects.create_user("clin", password="x" * 12, role="clinician", status="approved")
    clinician.groups.add(groups[0])
    admin = User.objects.create_user("adm", password="x" * 12, role="administrator", status="approved")
    out = {"archive_instances": n, "dim": dim, "fill_s": round(fill_s, 1), "requests": requests}
    client = Client()
    for who, user in (("clinician (1 of 4 groups)", clinician), ("administrator (all)", admin)):
        token = token_create(user=user, name="bench")[1]
        visible = [i for i in range(0, n, 7) if (i // 10) % 4 == 0] if user is clinician else list(range(0, n, 7))
        # First call builds the index from the database (what a fresh server does once).
        t = time.perf_counter()
        r = client.post("/api/v1/similar", data=json.dumps({"sop_instance_uid": f"2.25.9{visible[0]}.3"}),
                        content_type="application/json", HTTP_AUTHORIZATION=f"Token {token}")
        first_ms = (time.perf_counter() - t) * 1000
        assert r.status_code == 200, r.content
        lat = []
        for j in range(requests):
            uid = f"2.25.9{visible[(j * 13) % len(visible)]}.3"
            t = time.perf_counter()
            r = client.post("/api/v1/similar", data=json.dumps({"sop_instance_uid": uid, "k": 12}),
                            content_type="application/json", HTTP_AUTHORIZATION=f"Token {token}")
            lat.append((time.perf_counter() - t) * 1000)
            assert r.status_code == 200 and len(r.json()["matches"]) == 12, r.content
        p50, p95 = percentiles(lat)
        out[who] = {"first_call_ms": round(first_ms, 1), "p50_ms": round(p50, 2), "p95_ms": round(p95, 2)}
    from django.db import connections

    connections.close_all()
    import shutil

    shutil.rmtree(tmp, ignore_errors=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="100000,1000000", help="comma-separated index sizes")
    ap.add_argument("--dim", type=int, default=0, help="vector dimension (default: model card, else 128)")
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--ef", default="64,128,256,512", help="efSearch values to measure")
    ap.add_argument("--connectivity", type=int, default=HnswParams.connectivity)
    ap.add_argument("--expansion-add", type=int, default=HnswParams.expansion_add)
    ap.add_argument("--dtype", default="f16", choices=["f16", "f32", "i8"])
    ap.add_argument("--build-threads", type=int, default=2)
    ap.add_argument("--api-size", type=int, default=10_000)
    ap.add_argument("--api-requests", type=int, default=200)
    ap.add_argument("--skip-api", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data", default="matched", choices=["matched", "isotropic"],
                    help="matched: sampled from a model fitted to real embeddings (bench/embedding_profile.py), "
                         "queries are fresh samples; isotropic: the earlier stress case")
    ap.add_argument("--stored-dtype", default="f16", choices=["f16", "f32"],
                    help="precision of the stored embeddings the index and the exact oracle are built from "
                         "(the archive stores float16)")
    ap.add_argument("--oracle-only", action="store_true",
                    help="only compare exact search on the stored vectors with the float32 originals (no graph)")
    ap.add_argument("--profile", default="brain-mri", choices=["brain-mri", "lung-ct"],
                    help="which model's embeddings --data matched imitates")
    args = ap.parse_args()

    dim = args.dim or model_dim()
    params = HnswParams(connectivity=args.connectivity, expansion_add=args.expansion_add, dtype=args.dtype)
    print(f"# vector search benchmark: dim {dim}, {os.cpu_count()} cores, load average {os.getloadavg()}")
    efs = [int(x) for x in args.ef.split(",")]
    machine = {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
               "python": platform.python_version()}
    try:
        with open("/proc/cpuinfo") as fh:
            machine["cpu"] = next(line.split(":", 1)[1].strip() for line in fh if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    machine["load_average_at_start"] = os.getloadavg()
    results = {
        "machine": machine,
        "data": args.data,
        "profile": args.profile,
        "params": {"connectivity": params.connectivity, "expansion_add": params.expansion_add, "dtype": params.dtype},
        "sizes": [],
    }
    for n in [int(x) for x in args.sizes.split(",") if x]:
        r = bench_size(n, dim, args.queries, efs, params, args.build_threads, args.seed, args.data, args.profile,
                       args.stored_dtype, args.oracle_only)
        results["sizes"].append(r)
        o = r["exact_stored_vs_float32"]
        if args.oracle_only:
            print(
                f"\n## {n:,} x {dim} ({r['data']}): exact search on stored {r['stored_dtype']} vs float32 originals: "
                f"recall@10 {o['recall@10_vs_float32_originals']}, "
                f"mean cosine deficit {o['mean_cosine_deficit_vs_float32_top10']}, "
                f"median cosine gap 1st-10th {o['cosine_gap_1st_to_10th_median']}, "
                f"10th-11th {o['cosine_gap_10th_to_11th_median']}"
            )
            continue
        print(
            f"\n## {n:,} x {dim} ({r['data']}; HNSW M={params.connectivity}, "
            f"efConstruction={params.expansion_add}, {params.dtype})"
        )
        print(f"build {r['build_s']} s ({r['build_threads']} threads), index memory {r['index_memory_mb']} MB, "
              f"file {r['file_mb']} MB (save {r['save_s']} s, load {r['load_s']} s)")
        print(f"exact numpy baseline, 1 thread: p50 {r['exact_p50_ms']} ms, p95 {r['exact_p95_ms']} ms")
        print(
            f"the oracle (exact on stored {r['stored_dtype']}) vs float32 originals: recall@10 "
            f"{o['recall@10_vs_float32_originals']}, "
            f"mean cosine deficit {o['mean_cosine_deficit_vs_float32_top10']}; "
            f"median cosine gap 1st-10th {o['cosine_gap_1st_to_10th_median']}, "
            f"10th-11th {o['cosine_gap_10th_to_11th_median']}"
        )
        print(f"| efSearch | p50 ms | p95 ms | recall@10 (vs exact on stored {r['stored_dtype']}) "
              "| recall@10 vs float32 originals | mean cosine deficit vs float32 top 10 | speed-up vs exact (p50) |")
        print("|---|---|---|---|---|---|---|")
        for row in r["hnsw"]:
            print(f"| {row['ef_search']} | {row['p50_ms']} | {row['p95_ms']} | {row['recall@10']} "
                  f"| {row['recall@10_vs_float32_originals']} | {row['mean_cosine_deficit_vs_float32_top10']} "
                  f"| {row['speedup_vs_exact_p50']}x |")
        for frac, f in r["filtered"].items():
            print(f"filtered, {float(frac):.1%} allowed: p50 {f['p50_ms']} ms, p95 {f['p95_ms']} ms, "
                  f"recall@10 {f['recall@10']} ({f['method']})")
        sys.stdout.flush()
    if not args.skip_api:
        api = bench_api(args.api_size, dim, args.api_requests, args.data, args.profile)
        results["api"] = api
        print(f"\n## POST /api/v1/similar, {api['archive_instances']:,} instances, SQLite, k=12")
        for who in ("clinician (1 of 4 groups)", "administrator (all)"):
            a = api[who]
            print(f"{who}: p50 {a['p50_ms']} ms, p95 {a['p95_ms']} ms (its first call: {a['first_call_ms']} ms; "
                  "the process's first call builds the index)")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
