"""Researcher de-identification on the real DICOM samples: MedVault's Annex E Basic Profile
(``medvault.accounts.deid``) against dicognito, a maintained anonymiser, measured in one run.

Run (dicognito is not a MedVault dependency; install it to compare):

    .venv/bin/pip install dicognito==0.19.0
    .venv/bin/python bench/deid_compare.py

For every readable file under ``../shared/data/dicom`` (not ``invalid/``): time per file for
each tool, how many original top-level values the Basic Profile removes (attributes of
``medvault.accounts.deid.REMOVED_TAGS``, person names, dates) come out unchanged, and
whether the study UID was kept. Prints one JSON object.
"""

from __future__ import annotations

import copy
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "dicom"


def _kept(original, out, removed: frozenset[str]) -> dict[str, int]:
    """Top-level values of the original that the output still holds unchanged, by kind."""
    counts = {"profile_attributes": 0, "person_names": 0, "dates": 0, "free_text_or_ids": 0}
    for element in original:
        if element.VR == "SQ" or element.tag == 0x7FE00010 or element.value in (None, "", b""):
            continue
        key = f"{element.tag:08X}"
        is_date = element.VR in ("DA", "DT")
        if not (key in removed or element.VR == "PN" or is_date) or key == "00100020":
            continue
        if element.tag in out and out[element.tag].value == element.value:
            counts["profile_attributes"] += 1
            if element.VR == "PN":
                counts["person_names"] += 1
            elif is_date:
                counts["dates"] += 1
            else:
                counts["free_text_or_ids"] += 1
    return counts


def main() -> None:
    if not DATA.is_dir():
        raise SystemExit(f"no samples at {DATA}")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "medvault.web.settings")
    import django

    django.setup()
    import pydicom

    from medvault.accounts.deid import REMOVED_TAGS, deidentify_dataset

    try:
        from dicognito.anonymizer import Anonymizer
    except ImportError:
        Anonymizer = None  # noqa: N806
    files = []
    for path in sorted(DATA.rglob("*")):
        if not path.is_file() or "invalid" in path.parts or path.name == "DICOMDIR":
            continue
        try:
            files.append(pydicom.dcmread(path, force=False))
        except Exception:  # noqa: BLE001 - not DICOM (README, CSV): skipped
            continue
    result: dict[str, object] = {"files": len(files)}
    tools = {"medvault_annex_e": deidentify_dataset}
    if Anonymizer is not None:
        anonymizer = Anonymizer(seed="bench")

        def dicognito_run(ds):
            out = copy.deepcopy(ds)
            anonymizer.anonymize(out)
            return out

        tools["dicognito_0_19"] = dicognito_run
    for name, run in tools.items():
        times: list[float] = []
        left = {"profile_attributes": 0, "person_names": 0, "dates": 0, "free_text_or_ids": 0}
        uids_kept = 0
        for ds in files:
            started = time.perf_counter()
            out = run(ds)
            times.append((time.perf_counter() - started) * 1000)
            for key, value in _kept(ds, out, REMOVED_TAGS).items():
                left[key] += value
            uids_kept += str(out.get("StudyInstanceUID", "")) == str(ds.get("StudyInstanceUID", ""))
        result[name] = {
            "ms_per_file_median": round(statistics.median(times), 2),
            "ms_per_file_max": round(max(times), 1),
            "original_values_kept": left,
            "files_keeping_study_uid": uids_kept,
        }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT / "src"))
    main()
