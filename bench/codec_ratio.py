"""Lossless ratio and CPU cost of each codec and setting, on the benchmark's generated CT and
on real CT/MR from ../shared/data. Every encoding is decoded and compared pixel by pixel.

    .venv/bin/python bench/codec_ratio.py [--instances 20] [--json out.json]

Ratio = raw pixel bytes / encoded bytes (Pixel Data only; the header adds ~1-2 KB per
instance). "disk x" = 1 / ratio, what the stored pixels take against the input's.
CPU figures are the process's own CPU time, pinned to one core.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data" / "dicom"
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))


def _sets(instances: int) -> dict[str, list[np.ndarray]]:
    from io import BytesIO

    import pydicom
    from ingest import generate_series

    generated = [pydicom.dcmread(BytesIO(b)).pixel_array for b in generate_series(instances, seed=5)]
    ect = pydicom.dcmread(SHARED / "multiframe/eCT_Supplemental.dcm").pixel_array
    return {
        "bench CT (generated: real slices + noise, 512x512)": generated,
        "real CT (eCT_Supplemental, 2 x 512x512, as acquired)": [f for f in ect],
        "real MR (MR2_UNCR 1024x1024, PROSTATE-MRI 176x176)": [
            pydicom.dcmread(SHARED / "single_mr/MR2_UNCR.dcm").pixel_array,
            pydicom.dcmread(SHARED / "tcia/PROSTATE-MRI_MR.dcm").pixel_array,
        ],
    }


def _codecs() -> dict[str, tuple[Callable[[np.ndarray], bytes], Callable[[bytes], np.ndarray]]]:
    import imagecodecs

    def bits(a: np.ndarray) -> int:
        # As the archive does: BitsStored of the header (12 for all these CT and MR sets
        # whose values fit; 16 otherwise).
        top = int(a.max()) if a.size else 0
        return 12 if top < 4096 else 16

    return {
        "jpegls (CharLS, default)": (lambda a: imagecodecs.jpegls_encode(a, level=0), imagecodecs.jpegls_decode),
        "jpeg2000 lossless": (lambda a: imagecodecs.jpeg2k_encode(a, level=0, reversible=True, codecformat="j2k"),
                              imagecodecs.jpeg2k_decode),
        "htj2k lossless": (lambda a: imagecodecs.htj2k_encode(a, level=0, reversible=True), imagecodecs.htj2k_decode),
        "jpegxl lossless effort 3 (current)": (
            lambda a: imagecodecs.jpegxl_encode(a, lossless=True, effort=3, bitspersample=bits(a)),
            imagecodecs.jpegxl_decode),
        "jpegxl lossless effort 7": (
            lambda a: imagecodecs.jpegxl_encode(a, lossless=True, effort=7, bitspersample=bits(a)),
            imagecodecs.jpegxl_decode),
        "jpegxl lossless effort 9": (
            lambda a: imagecodecs.jpegxl_encode(a, lossless=True, effort=9, bitspersample=bits(a)),
            imagecodecs.jpegxl_decode),
        "zlib 9 (baseline)": (lambda a: imagecodecs.zlib_encode(a.tobytes(), level=9),
                              lambda b: np.frombuffer(imagecodecs.zlib_decode(b), np.uint16)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--instances", type=int, default=20)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    from ingest import pin_to_one_core

    pin_to_one_core()
    rows: list[dict[str, Any]] = []
    for set_name, frames in _sets(args.instances).items():
        raw = sum(f.nbytes for f in frames)
        for codec, (encode, decode) in _codecs().items():
            t0 = time.process_time()
            encoded = [bytes(encode(np.ascontiguousarray(f))) for f in frames]
            t1 = time.process_time()
            decoded = [decode(e) for e in encoded]
            t2 = time.process_time()
            for f, d in zip(frames, decoded, strict=True):
                d = np.asarray(d)
                if "zlib" in codec:
                    d = d.view(f.dtype)
                assert np.array_equal(d.reshape(f.shape), f), f"{codec} is not lossless on {set_name}"
            size = sum(len(e) for e in encoded)
            rows.append({
                "set": set_name, "codec": codec, "ratio": round(raw / size, 2),
                "disk_x": round(size / raw, 3),
                "encode_ms_per_frame": round((t1 - t0) * 1000 / len(frames), 1),
                "decode_ms_per_frame": round((t2 - t1) * 1000 / len(frames), 1),
            })
            print(f"{set_name:55s} {codec:36s} ratio {raw / size:5.2f}  disk {size / raw:.3f}x  "
                  f"enc {rows[-1]['encode_ms_per_frame']:6.1f} ms  dec {rows[-1]['decode_ms_per_frame']:6.1f} ms",
                  file=sys.stderr)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
