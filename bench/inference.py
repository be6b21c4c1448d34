"""Inference benchmark for the shipped models (run on real images).

Measures, in one run and for each model:
  * batch-1 latency with ONE thread: ONNX Runtime vs PyTorch eager (same architecture; the
    PyTorch copy is rebuilt from the ONNX weights when they can be mapped, else random weights of
    the same shapes - latency does not depend on weight values);
  * throughput with TWO threads (batch 32), ONNX Runtime and PyTorch;
  * the whole ``medvault.core.ml.analyse()`` path on real PNG/JPEG files (decode excluded,
    domain gate + preprocessing + model + heat-map included), one thread.
Upload-to-stored-result time is measured by the analysis app's benchmark (it owns the job
queue); call ``analyse_path_ms()`` from there to split the figure.

    .venv/bin/python bench/inference.py [--models-dir models] [--repeat 200]

Prints one JSON object per model and a summary line; ratios are against PyTorch eager measured
in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from medvault.core.ml import analyse, load_model  # noqa: E402
from medvault.training.export import ort_session  # noqa: E402

DATA = ROOT.parent / "shared" / "data"


def _time(fn, repeat: int) -> list[float]:  # type: ignore[no-untyped-def]
    for _ in range(10):
        fn()
    out = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1000)
    return out


def _stats(ms: list[float]) -> dict:
    s = sorted(ms)
    return {"p50_ms": round(statistics.median(s), 3), "p95_ms": round(s[int(len(s) * 0.95) - 1], 3)}


def torch_model(card: dict):  # type: ignore[no-untyped-def]
    """An eager PyTorch module of the card's architecture (random weights: for timing only).
    For an ensemble card (``medvault ensemble``), every member over every view."""
    import torch

    from medvault.training.nets import CompactNet, ExportWrapper

    def one(architecture: dict, recipe: dict) -> torch.nn.Module:
        net = CompactNet(len(card["labels"]), tuple(architecture["widths"]),
                         int(card["outputs"].get("embedding_dim", 128)),
                         last_stride=int(recipe.get("last_stride", 2)))
        return ExportWrapper(net.eval(), float(card["outputs"]["temperature"])).eval()

    if "members" not in card["architecture"]:
        return one(card["architecture"], card["training"]["recipe"]), torch
    members = [one(m["architecture"], t["recipe"])
               for m, t in zip(card["architecture"]["members"], card["training"]["members"], strict=True)]
    flip = len(card["architecture"].get("views", [])) > 1

    class Ensemble(torch.nn.Module):
        def forward(self, x):  # type: ignore[no-untyped-def]
            views = torch.cat([x, x.flip(-1)]) if flip else x
            outs = [m(views) for m in members]
            logits = torch.stack([o[1] for o in outs]).mean(0).reshape(len(views) // len(x), len(x), -1).mean(0)
            return torch.softmax(logits, 1), logits, outs[0][2][: len(x)], outs[0][3][: len(x)]

    return Ensemble().eval(), torch


def analyse_path_ms(model, images: list[np.ndarray], repeat: int = 3) -> list[float]:  # type: ignore[no-untyped-def]
    ms = []
    for _ in range(repeat):
        for img in images:
            t0 = time.perf_counter()
            analyse(model, img)
            ms.append((time.perf_counter() - t0) * 1000)
    return ms


def real_images(folder: str, n: int = 40) -> list[np.ndarray]:
    from PIL import Image

    files = sorted((DATA / folder).rglob("*.[pj][np]g"))[:: max(1, 1)][:n]
    return [np.asarray(Image.open(f).convert("L")) for f in files]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models-dir", type=Path, default=ROOT / "models")
    ap.add_argument("--repeat", type=int, default=200)
    a = ap.parse_args()
    results = []
    for name, folder in (("brain-mri", "brain_mri"), ("lung-ct", "chest_ct")):
        if not (a.models_dir / f"{name}.json").exists():  # a candidate folder holds one model
            continue
        card = json.loads((a.models_dir / f"{name}.json").read_text())
        size = int(card["input"]["shape"][-1])
        x1 = np.random.default_rng(0).random((1, 1, size, size), dtype=np.float32)
        x32 = np.random.default_rng(1).random((32, 1, size, size), dtype=np.float32)
        s1 = ort_session(a.models_dir / card["file"], threads=1)
        s2 = ort_session(a.models_dir / card["file"], threads=2)
        ort1 = _time(lambda s1=s1, x1=x1: s1.run(None, {"image": x1}), a.repeat)
        t0 = time.perf_counter()
        for _ in range(10):
            s2.run(None, {"image": x32})
        ort_tp = 320 / (time.perf_counter() - t0)
        module, torch = torch_model(card)
        torch.set_num_threads(1)
        tx1 = torch.from_numpy(x1)
        with torch.inference_mode():
            pt1 = _time(lambda module=module, tx1=tx1: module(tx1), max(50, a.repeat // 4))
            torch.set_num_threads(2)
            tx32 = torch.from_numpy(x32)
            module(tx32)
            t0 = time.perf_counter()
            for _ in range(10):
                module(tx32)
            pt_tp = 320 / (time.perf_counter() - t0)
        rec = {
            "model": name, "input": f"1x1x{size}x{size}",
            "onnxruntime_1thread_batch1": _stats(ort1),
            "pytorch_eager_1thread_batch1": _stats(pt1),
            "speedup_ort_vs_pytorch_p50": round(statistics.median(pt1) / statistics.median(ort1), 2),
            "onnxruntime_2threads_batch32_images_per_s": round(ort_tp, 1),
            "pytorch_eager_2threads_batch32_images_per_s": round(pt_tp, 1),
        }
        if DATA.is_dir():
            model = load_model(name, a.models_dir, threads=1)
            rec["analyse_path_1thread_real_images"] = _stats(
                analyse_path_ms(model, real_images(folder)))
        results.append(rec)
        print(json.dumps(rec), flush=True)
    print(json.dumps({
        "machine": f"{platform.machine()}, {os.cpu_count()} logical CPUs, "
                   f"load average {os.getloadavg()[0]:.1f} at the end",
        "target_ms_per_image_one_core": 20,
        "met": all(r["onnxruntime_1thread_batch1"]["p50_ms"] <= 20 for r in results),
    }))


if __name__ == "__main__":
    main()
