"""Load benchmark against a running cluster (`make cluster`): a 1-client baseline, then N
clients, in the same run; prints both summaries and the ratios.

    make cluster
    .venv/bin/python bench/cluster_load.py --clients 32 --seconds 60
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "reliability"))

from loadgen import run_load, verify  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:8080")
    parser.add_argument("--cluster-dir", type=Path, default=ROOT / "var" / "cluster")
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--baseline-seconds", type=float, default=20)
    parser.add_argument("--template", type=Path, action="append")
    args = parser.parse_args()
    token = (args.cluster_dir / "admin_token").read_text().strip()
    password = (args.cluster_dir / "admin_password").read_text().strip()
    data = ROOT.parent / "shared" / "data" / "dicom"
    templates = [p.read_bytes() for p in (args.template or [
        data / "single_ct" / "CT_small.dcm", data / "single_mr" / "MR_small.dcm"])]

    results = {}
    for name, clients, seconds in (("baseline", 1, args.baseline_seconds),
                                   ("load", args.clients, args.seconds)):
        run, summary = run_load(url=args.url, token=token, password=password,
                                templates=templates, clients=clients, seconds=seconds)
        summary["verify"] = verify(run)
        summary.pop("failures")
        results[name] = summary
        print(json.dumps({name: summary}))
    base, load = results["baseline"], results["load"]
    print(json.dumps({"ratios": {
        "throughput_x": round(load["throughput_rps"] / base["throughput_rps"], 2),
        "uploads_per_s_x": round(load["uploads_per_s"] / max(base["uploads_per_s"], 1e-9), 2),
        "p50_latency_x": round(load["p50_ms"] / max(base["p50_ms"], 1e-9), 2),
        "p95_latency_x": round(load["p95_ms"] / max(base["p95_ms"], 1e-9), 2),
    }}))


if __name__ == "__main__":
    main()
