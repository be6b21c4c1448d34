"""Upload-to-result latency: from handing an image to the archive to a stored analysis.

Run (real images from ../shared/data, shipped models from models/):

    .venv/bin/python bench/analysis_latency.py [--images 20] [--poll-ms 100]

What it does, in one run:

1. builds a throw-away installation (SQLite file + filesystem blob store in a temp dir),
2. starts one real ``medvault worker --concurrency 1`` process on it,
3. stores real chest-CT PNGs and brain-MRI JPEGs one at a time through the archive's
   ``image_store`` (the service behind web upload, STOW-RS and C-STORE; auto-analysis on) and
   waits for each stored ``AnalysisResult``,
4. measures the baseline in the same run: the model alone (``medvault.core.ml.analyse`` on the
   same images, in this process, after warm-up).

It prints one JSON object: p50/p95/max upload-to-result, its parts (store, queue wait,
inference), the model-alone baseline and the ratio between them.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def summary(values: list[float]) -> dict[str, float]:
    return {
        "p50": round(statistics.median(values), 1),
        "p95": round(percentile(values, 95), 1),
        "max": round(max(values), 1),
    }


def images(count: int) -> list[tuple[Path, dict[str, str]]]:
    ct = sorted((SHARED / "chest_ct" / "valid").glob("*/*.png"))
    mr = sorted((SHARED / "brain_mri" / "train").glob("*/*.jpg"))[::97]
    ct_fields = {"modality": "CT", "body_part": "CHEST"}
    mr_fields = {"modality": "MR", "body_part": "BRAIN"}
    chosen: list[tuple[Path, dict[str, str]]] = []
    for i in range(count):
        if i % 2 == 0:
            chosen.append((ct[(i // 2) * 7 % len(ct)], ct_fields))
        else:
            chosen.append((mr[(i // 2) % len(mr)], mr_fields))
    return chosen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=20)
    parser.add_argument(
        "--poll-ms",
        type=int,
        default=None,
        help="worker idle poll interval (default: the MEDVAULT_WORKER_POLL_MS setting)",
    )
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds to wait per image")
    args = parser.parse_args()
    if not SHARED.is_dir():
        raise SystemExit(f"real data not found at {SHARED}")
    models = ROOT / "models"
    for name in ("lung-ct", "brain-mri"):
        if not (models / f"{name}.onnx").is_file():
            raise SystemExit(f"models/{name}.onnx is missing: train and export the models first")

    tmp = Path(tempfile.mkdtemp(prefix="mv-bench-analysis-"))
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "medvault.web.settings",
        "MEDVAULT_DATA_DIR": str(tmp / "var"),
        "MEDVAULT_BLOB_DIR": str(tmp / "blobs"),
        "DATABASE_URL": f"sqlite:///{tmp / 'bench.sqlite3'}",
        "MEDVAULT_MODELS_DIR": str(models),
        "MEDVAULT_AUTO_ANALYSE": "1",
        "MEDVAULT_LOG_LEVEL": "WARNING",
    }
    if args.poll_ms is not None:
        env["MEDVAULT_WORKER_POLL_MS"] = str(args.poll_ms)
    os.environ.update(env)
    subprocess.run(
        [sys.executable, "-m", "medvault.cli", "migrate", "-v0", "--skip-checks"],
        env=env,
        check=True,
        cwd=ROOT,
    )

    import django

    django.setup()
    import numpy as np
    from django.conf import settings
    from PIL import Image

    from medvault.analysis.models import AnalysisResult
    from medvault.archive.uploads import image_store
    from medvault.core.ml import analyse, load_model

    chosen = images(args.images)

    # Baseline, same run: the model alone on the same images (warm, in this process).
    loaded = {name: load_model(name, models) for name in ("lung-ct", "brain-mri")}
    model_alone: list[float] = []
    for path, fields in chosen:
        name = "lung-ct" if fields["modality"] == "CT" else "brain-mri"
        pixels = np.asarray(Image.open(path))  # PNG/JPEG as given
        analyse(loaded[name], pixels)  # warm-up
        started = time.perf_counter()
        analyse(loaded[name], pixels)
        model_alone.append((time.perf_counter() - started) * 1000)

    worker = subprocess.Popen(
        [sys.executable, "-m", "medvault.cli", "worker", "--concurrency", "1"], env=env, cwd=ROOT
    )
    try:
        # Warm the worker (process start, model loads) with one image of each kind.
        for n, (path, fields) in enumerate(chosen[:2]):
            stored = image_store(
                data=path.read_bytes(),
                patient_id=f"WARM-{n}",
                patient_name="Bench^Warm",
                source="bench",
                **fields,
            )
            deadline = time.monotonic() + 120
            while not AnalysisResult.objects.filter(instance=stored.instance).exists():
                if time.monotonic() > deadline or worker.poll() is not None:
                    raise SystemExit("the worker did not produce a result for the warm-up image")
                time.sleep(0.05)

        upload_to_result, store_ms, queue_ms, inference_ms, refused = [], [], [], [], 0
        for n, (path, fields) in enumerate(chosen):
            data = path.read_bytes()
            started = time.perf_counter()
            stored = image_store(
                data=data,
                patient_id=f"BENCH-{n}",
                patient_name="Bench^Latency",
                source="bench",
                **fields,
            )
            stored_at = time.perf_counter()
            assert stored.status == "stored", stored.reason
            deadline = time.monotonic() + args.timeout
            while True:
                result = AnalysisResult.objects.filter(instance=stored.instance).first()
                if result is not None:
                    break
                if time.monotonic() > deadline:
                    raise SystemExit(f"no result for {path.name} after {args.timeout} s")
                time.sleep(0.005)
            done = time.perf_counter()
            upload_to_result.append((done - started) * 1000)
            store_ms.append((stored_at - started) * 1000)
            queue_ms.append(result.queue_wait_ms)
            inference_ms.append(result.inference_ms)
            refused += int(result.refused)
    finally:
        worker.terminate()
        worker.wait(timeout=30)

    p50 = statistics.median(upload_to_result)
    report = {
        "bench": "analysis_latency",
        "images": len(chosen),
        "refused": refused,
        "worker_poll_ms": settings.MEDVAULT_WORKER_POLL_MS,
        "upload_to_result_ms": summary(upload_to_result),
        "store_ms": summary(store_ms),
        "queue_wait_ms": summary(queue_ms),
        "inference_ms_in_worker": summary(inference_ms),
        "baseline_model_alone_ms": summary(model_alone),
        "ratio_upload_to_result_vs_model_alone_p50": round(p50 / statistics.median(model_alone), 1),
        "target_upload_to_result_ms": 1000,
        "meets_target_p95": percentile(upload_to_result, 95) < 1000,
    }
    print(json.dumps(report))


if __name__ == "__main__":
    main()
