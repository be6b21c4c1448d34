"""Storage commitment of a stored series, against storing it, in one run.

    .venv/bin/python bench/storage_commitment.py [--instances 200] [--runs 3]

A throw-away MedVault (SQLite, JPEG-LS compressed inside ingest, so every commitment reads a
compressed blob back and hashes it) runs its DICOM server in this process. A pynetdicom SCU
C-STOREs a CT series over one association (the baseline): 512x512 12-bit slices made from the
real ``../shared/data/dicom/multiframe/eCT_Supplemental.dcm`` by ``bench/ingest.py``'s
generator, then asks for storage
commitment of the whole series (N-ACTION) and waits on its own listening AE for the
N-EVENT-REPORT that MedVault sends on a new association. Reported: seconds for each, per
instance, and the ratio commitment / store. Each run uses a new series.
"""

from __future__ import annotations

import argparse
import io
import json
import queue
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from ingest import SHARED, generate_series  # noqa: E402
from throwaway import throwaway_installation  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=200)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    if not (SHARED / "multiframe" / "eCT_Supplemental.dcm").is_file():
        raise SystemExit(f"real data not found under {SHARED}")
    tmp = throwaway_installation("mv-bench-commitment-", MEDVAULT_COMPRESSION_DEFERRED="0")
    import pydicom
    from pydicom.dataset import Dataset
    from pydicom.uid import generate_uid
    from pynetdicom import AE, evt
    from pynetdicom.sop_class import (
        CTImageStorage,
        StorageCommitmentPushModel,
        StorageCommitmentPushModelInstance,
    )

    from medvault.dimse.handlers import nodelay_set
    from medvault.dimse.models import RemoteAE
    from medvault.dimse.server import dicomserver_start

    reports: queue.Queue[tuple[float, int, int]] = queue.Queue()

    def on_report(event: Any) -> tuple[int, None]:
        info = event.event_information
        reports.put((time.perf_counter(), event.event_type,
                     len(info.get("ReferencedSOPSequence", []))))
        return 0x0000, None

    # Both servers bind a port the kernel picks (0) and are asked which one it was.
    listener = AE(ae_title="BENCHSCU")
    listener.add_supported_context(StorageCommitmentPushModel, scu_role=True, scp_role=True)
    listening = listener.start_server(("127.0.0.1", 0), block=False,
                                      evt_handlers=[(evt.EVT_N_EVENT_REPORT, on_report)])
    RemoteAE.objects.create(ae_title="BENCHSCU", host="127.0.0.1",
                            port=listening.server_address[1])
    server = dicomserver_start(host="127.0.0.1", port=0, ae_title="MEDVAULT", accept_unknown=False)
    scp_port = server.server_address[1]
    scu = AE(ae_title="BENCHSCU")
    scu.add_requested_context(CTImageStorage)
    scu.add_requested_context(StorageCommitmentPushModel)
    handlers = [(evt.EVT_CONN_OPEN, nodelay_set)]
    store_s: list[float] = []
    commit_s: list[float] = []
    try:
        for run in range(args.runs):
            files = generate_series(args.instances, seed=run)
            datasets = [pydicom.dcmread(io.BytesIO(f)) for f in files]
            assoc = scu.associate("127.0.0.1", scp_port, ae_title="MEDVAULT", evt_handlers=handlers)
            start = time.perf_counter()
            for ds in datasets:
                status = assoc.send_c_store(ds)
                if status.Status != 0x0000:
                    raise SystemExit(f"C-STORE answered 0x{status.Status:04X}")
            store_s.append(time.perf_counter() - start)
            request = Dataset()
            request.TransactionUID = generate_uid()
            items = []
            for ds in datasets:
                item = Dataset()
                item.ReferencedSOPClassUID = ds.SOPClassUID
                item.ReferencedSOPInstanceUID = ds.SOPInstanceUID
                items.append(item)
            request.ReferencedSOPSequence = items
            start = time.perf_counter()
            status, _ = assoc.send_n_action(request, 1, StorageCommitmentPushModel,
                                            StorageCommitmentPushModelInstance)
            assoc.release()
            if status.Status != 0x0000:
                raise SystemExit(f"N-ACTION answered 0x{status.Status:04X}")
            arrived, event_type, committed = reports.get(timeout=600)
            if event_type != 1 or committed != args.instances:
                raise SystemExit(f"report: event type {event_type}, {committed} committed")
            commit_s.append(arrived - start)
            print(f"run {run + 1}: store {store_s[-1]:.2f} s, commitment {commit_s[-1]:.2f} s",
                  file=sys.stderr)
    finally:
        server.shutdown()
        listening.shutdown()
        shutil.rmtree(tmp, ignore_errors=True)
    store, commit = statistics.median(store_s), statistics.median(commit_s)
    print(json.dumps({
        "instances": args.instances,
        "runs": args.runs,
        "store_s_median": round(store, 2),
        "commitment_s_median": round(commit, 2),
        "store_ms_per_instance": round(1000 * store / args.instances, 2),
        "commitment_ms_per_instance": round(1000 * commit / args.instances, 2),
        "ratio_commitment_over_store": round(commit / store, 3),
    }, indent=1))


if __name__ == "__main__":
    main()
