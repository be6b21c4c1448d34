"""In-process cost of the acknowledged ingest path (deferred compression): ``instance_store``
per instance, and STOW-RS requests of N parts through Django's test client.

Run: PYTHONPATH=src python bench/stow_inprocess.py [--count 40] [--parts 20] [--profile]
Uses a fresh SQLite database and blob directory under a temporary folder (fsync on).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=40, help="instances for instance_store")
    parser.add_argument("--parts", type=int, default=20, help="parts per STOW-RS request")
    parser.add_argument("--requests", type=int, default=3)
    parser.add_argument("--profile", choices=["", "store", "stow"], default="")
    parser.add_argument("--one-series", action="store_true",
                        help="all requests carry slices of one series (as bench/versus_orthanc.py sends)")
    parser.add_argument("--sort", default="cumulative", help="pstats sort key for --profile")
    parser.add_argument("--pstats", help="also write the profile here (for pstats' print_callers)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="stow-bench-"))
    os.environ.update({
        "MEDVAULT_DATA_DIR": str(work), "DATABASE_URL": f"sqlite:///{work / 'db.sqlite3'}",
        "MEDVAULT_BLOB_DIR": str(work / "blobs"), "MEDVAULT_COMPRESSION_DEFERRED": "true",
        "MEDVAULT_AUTO_ANALYSE": "false", "MEDVAULT_ALLOWED_HOSTS": "testserver,localhost",
        "DJANGO_SETTINGS_MODULE": "medvault.web.settings",
    })
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", "--noinput", verbosity=0)
    from ctseries import ct_series_512
    from django.contrib.auth.models import Group
    from django.test import Client

    from medvault.accounts.models import User
    from medvault.accounts.tokens import token_create
    from medvault.archive.ingest import instance_store
    from medvault.core.dicom.multipart import boundary_new, multipart_build, multipart_content_type

    profiler = None
    if args.profile:
        import cProfile

        profiler = cProfile.Profile()

    _, files = ct_series_512(args.count, seed=1)
    instance_store(data=ct_series_512(1, seed=9)[1][0], source="bench")  # warm caches
    if args.profile == "store":
        assert profiler is not None
        profiler.enable()
    start, cpu = time.perf_counter(), time.process_time()
    for data in files:
        instance_store(data=data, source="bench")
    per_instance = (time.perf_counter() - start) / len(files)
    cpu_per_instance = (time.process_time() - cpu) / len(files)
    if args.profile == "store":
        assert profiler is not None
        profiler.disable()
    print(f"instance_store: {per_instance * 1000:.1f} ms/instance, {cpu_per_instance * 1000:.1f} ms CPU "
          f"({len(files)} instances)")

    group = Group.objects.create(name="bench")
    user = User.objects.create_user(username="bench", password="Corr3ct-Horse-Battery", role="clinician",
                                    status="approved", email="b@example.org")
    user.groups.add(group)
    _, token = token_create(user=user, name="bench")
    client = Client()
    bodies = []
    one_series = ct_series_512(args.parts * args.requests, seed=100)[1] if args.one_series else []
    for index in range(args.requests):
        if one_series:
            series = one_series[index * args.parts:(index + 1) * args.parts]
        else:
            _, series = ct_series_512(args.parts, seed=100 + index)
        boundary = boundary_new()
        body = b"".join(multipart_build([(f, "application/dicom") for f in series], boundary))
        bodies.append((body, multipart_content_type(boundary, "application/dicom")))
    if args.profile == "stow":
        assert profiler is not None
        profiler.enable()
    start, cpu = time.perf_counter(), time.process_time()
    for body, ctype in bodies:
        response = client.post("/dicomweb/studies", data=body, content_type=ctype,
                               HTTP_AUTHORIZATION=f"Token {token}")
        assert response.status_code == 200, response.content[:500]
    elapsed = time.perf_counter() - start
    cpu = time.process_time() - cpu
    if args.profile == "stow":
        assert profiler is not None
        profiler.disable()
    total = args.parts * args.requests
    print(f"STOW-RS: {elapsed / total * 1000:.1f} ms/instance, {total / elapsed:.1f} instances/s, "
          f"{cpu / total * 1000:.1f} ms CPU/instance "
          f"({args.requests} requests of {args.parts} parts)")
    # C-STORE: handle_store with a stand-in for pynetdicom's event (an unknown calling AE, as
    # an open archive takes it), implicit VR little endian as most modalities send.
    import io

    import pydicom
    from pydicom.uid import ImplicitVRLittleEndian

    from medvault.dimse.handlers import handle_store

    class _Requestor:
        ae_title, address, port = "BENCH", "127.0.0.1", 11112

    class _Assoc:
        requestor = _Requestor()

    class _Event:
        assoc = _Assoc()

        def __init__(self, data: bytes) -> None:
            self.data = data

        def encoded_dataset(self, include_meta: bool = True) -> bytes:
            return self.data

    implicit = []
    for data in ct_series_512(args.count, seed=200)[1]:
        ds = pydicom.dcmread(io.BytesIO(data))
        ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
        buffer = io.BytesIO()
        ds.save_as(buffer, implicit_vr=True, little_endian=True)
        implicit.append(buffer.getvalue())
    start, cpu = time.perf_counter(), time.process_time()
    for data in implicit:
        assert handle_store(_Event(data)) == 0
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    print(f"C-STORE handle_store: {elapsed / len(implicit) * 1000:.1f} ms/instance, "
          f"{cpu / len(implicit) * 1000:.1f} ms CPU/instance ({len(implicit)} implicit VR instances)")
    if profiler is not None:
        import pstats

        pstats.Stats(profiler).sort_stats(args.sort).print_stats(45)
        if args.pstats:
            profiler.dump_stats(args.pstats)


if __name__ == "__main__":
    main()
