"""WADO-RS series metadata: 100 real-CT-derived instances, answered from the index.

Run:

    .venv/bin/python bench/dicomweb_metadata.py [--instances 100] [--repeat 15]

In one run, on a throw-away installation (SQLite file + blob store in a temp dir): a series
generated from the real CT sample ``../shared/data/dicom/multiframe/eCT_Supplemental.dcm``
(512x512, 16-bit, new UIDs, pixels shifted and noised per instance) is stored through STOW-RS;
then ``GET /dicomweb/studies/{s}/series/{se}/metadata`` is timed through Django's full request
stack (token authentication, permission check, audit). The baseline, measured in the same run,
is what an archive that reads its files for metadata does (Orthanc users report 6-10 s per
series): read every stored blob, parse it and convert it to DICOM JSON.

Prints one JSON object with p50/p95 in milliseconds and the ratio baseline/index.
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
sys.path.insert(0, str(ROOT / "bench"))

from latency import summary  # noqa: E402
from throwaway import bench_clinician, throwaway_installation  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()
    tmp = throwaway_installation("mv-bench-metadata-")
    import pydicom
    from django.test import Client
    from ingest import generate_series  # bench/ingest.py: the realistic CT generator

    from medvault.accounts.tokens import token_create
    from medvault.archive.models import Instance
    from medvault.archive.selectors import instance_dataset
    from medvault.core.dicom.multipart import boundary_new, multipart_build, multipart_content_type

    user, _group = bench_clinician()
    _, key = token_create(user=user, name="bench")
    headers = {"HTTP_AUTHORIZATION": f"Token {key}"}

    files = generate_series(args.instances)
    boundary = boundary_new()
    body = b"".join(multipart_build([(f, "application/dicom") for f in files], boundary))
    client = Client()
    response = client.post("/dicomweb/studies", data=body,
                           content_type=multipart_content_type(boundary, "application/dicom"), **headers)
    assert response.status_code == 200, response.content[:500]
    first = pydicom.dcmread(io.BytesIO(files[0]), stop_before_pixels=True)
    url = f"/dicomweb/studies/{first.StudyInstanceUID}/series/{first.SeriesInstanceUID}/metadata"

    index_ms = []
    for _ in range(args.repeat + 1):
        started = time.perf_counter()
        response = client.get(url, **headers)
        index_ms.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200 and len(response.json()) == args.instances
    index_ms = index_ms[1:]  # the first request warms imports and caches

    blob_ms = []
    instances = list(Instance.objects.filter(series__series_instance_uid=first.SeriesInstanceUID))
    for _ in range(max(3, args.repeat // 5)):
        started = time.perf_counter()
        metas = []
        for instance in instances:
            ds = instance_dataset(instance=instance)
            del ds.PixelData
            metas.append(ds.to_json_dict())
        json.dumps(metas)
        blob_ms.append((time.perf_counter() - started) * 1000)

    print(json.dumps({
        "series_instances": args.instances,
        "index_metadata_ms": summary(index_ms),
        "baseline_read_blobs_ms": summary(blob_ms),
        "ratio_baseline_over_index_p50": round(statistics.median(blob_ms) / statistics.median(index_ms), 1),
    }, indent=2))
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
