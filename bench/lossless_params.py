"""Encoder parameters of MedVault's lossless codecs, swept on the generated CT series: does any
setting get the pixels smaller without costing much more CPU? Every encoding is decoded and
compared pixel by pixel.

    .venv/bin/python bench/lossless_params.py [--instances 10] [--json out.json]

Pixel Data only ("disk" = encoded / raw pixel bytes; a whole generated file adds its 6.5 KB
header, see bench/disk_ratio_vs_orthanc.py). CPU milliseconds per 512x512 slice, this process
pinned to one core. The rows marked "(current)" are what src/medvault/core/codecs/lossless.py
does today: JPEG-LS and JPEG 2000 through pydicom's encoders (CharLS, OpenJPEG with its fixed
6 resolutions), HTJ2K and JPEG-XL through imagecodecs.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))


def variants() -> dict[str, tuple[Callable[[np.ndarray], bytes], Callable[[bytes], np.ndarray]]]:
    import imagecodecs
    from pydicom.pixels.encoders.base import JPEG2000LosslessEncoder, JPEGLSLosslessEncoder

    meta = dict(rows=512, columns=512, samples_per_pixel=1, bits_allocated=16, bits_stored=12,
                pixel_representation=0, photometric_interpretation="MONOCHROME2", number_of_frames=1,
                planar_configuration=0)
    out: dict[str, tuple[Callable[[np.ndarray], bytes], Callable[[bytes], np.ndarray]]] = {
        "jpegls, CharLS via pydicom (current)": (
            lambda a: JPEGLSLosslessEncoder.encode(a, encoding_plugin="pyjpegls", **meta),
            imagecodecs.jpegls_decode,
        ),
        "jpeg2000, OpenJPEG via pydicom, 6 resolutions (current)": (
            lambda a: JPEG2000LosslessEncoder.encode(a, encoding_plugin="pylibjpeg", **meta),
            imagecodecs.jpeg2k_decode,
        ),
    }
    for r in (3, 4, 5, 6, 7):
        out[f"jpeg2000, OpenJPEG via imagecodecs, {r} resolutions, 12 bits"] = (
            lambda a, r=r: imagecodecs.jpeg2k_encode(a, level=0, reversible=True, codecformat="j2k",
                                                     resolutions=r, bitspersample=12),
            imagecodecs.jpeg2k_decode)
    out["htj2k (current)"] = (lambda a: imagecodecs.htj2k_encode(a, level=0, reversible=True),
                              imagecodecs.htj2k_decode)
    for e in range(3, 10):
        out[f"jpegxl effort {e}" + (" (current default)" if e == 3 else "")] = (
            lambda a, e=e: imagecodecs.jpegxl_encode(a, lossless=True, effort=e, bitspersample=12),
            imagecodecs.jpegxl_decode)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--instances", type=int, default=10)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    import pydicom
    from ingest import generate_series, pin_to_one_core

    pin_to_one_core()
    frames = [pydicom.dcmread(io.BytesIO(b)).pixel_array for b in generate_series(args.instances, seed=5)]
    raw = sum(f.nbytes for f in frames)
    rows: list[dict[str, Any]] = []
    for name, (encode, decode) in variants().items():
        t0 = time.process_time()
        encoded = [bytes(encode(np.ascontiguousarray(f))) for f in frames]
        t1 = time.process_time()
        decoded = [np.asarray(decode(e)).reshape(f.shape) for e, f in zip(encoded, frames, strict=True)]
        t2 = time.process_time()
        exact = all(np.array_equal(d, f) for d, f in zip(decoded, frames, strict=True))
        size = sum(len(e) for e in encoded)
        rows.append({"variant": name, "disk_x": round(size / raw, 4), "bit_exact": exact,
                     "encode_ms": round((t1 - t0) * 1000 / len(frames), 1),
                     "decode_ms": round((t2 - t1) * 1000 / len(frames), 1)})
        print(f"{name:58s} disk {size / raw:.4f}  enc {rows[-1]['encode_ms']:6.1f} ms  "
              f"dec {rows[-1]['decode_ms']:5.1f} ms  exact {exact}", file=sys.stderr, flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
