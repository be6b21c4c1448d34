"""Several exported members, and optionally each slice's mirror image, as one ONNX graph.

``medvault ensemble NAME --members A.onnx B.onnx [--tta-flip]`` builds a graph with the
serving interface of a single model (input ``image`` N x 1 x S x S; outputs ``probabilities``,
``logits``, ``embedding``, ``cam``), so nothing in serving changes:

- ``logits``: the mean of every member's raw logits over the views (the slice, and with
  ``--tta-flip`` its left-right mirror image);
- ``probabilities``: softmax(logits / T), T fitted on the internal validation split (NLL) of
  the averaged logits; each member's own temperature is not used;
- ``cam``: the mean of the members' class activation maps, the mirror view's map mirrored back
  first, so that it lines up with the slice;
- ``embedding``: the first member's, on the slice itself (the retrieval index, and the
  near-OOD statistics fitted on it, keep their meaning).

The members' graphs are copied in unchanged (names prefixed ``m0_``, ``m1_``...), and the
views go through each member as one batch of 2N.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
ENSEMBLE_VERSION = "1.1.0"
_BIG = np.iinfo(np.int64).max


def _const(name: str, values: list[int] | list[float], dtype: type = np.int64) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(values, dtype=dtype), name)


def _mean(nodes: list[onnx.NodeProto], names: list[str], out: str) -> None:
    """out = the mean of same-shaped tensors ``names``."""
    if len(names) == 1:
        nodes.append(helper.make_node("Identity", [names[0]], [out]))
        return
    nodes.append(helper.make_node("Sum", names, [out + "_sum"]))
    nodes.append(helper.make_node("Mul", [out + "_sum", "k_inv_members"], [out]))


def _split_views(nodes: list[onnx.NodeProto], name: str, out: str) -> None:
    """(views * N) x ... -> views x N x ...: the batch holds the views one after the other."""
    nodes.append(helper.make_node("Shape", [name], [name + "_tail"], start=1))
    nodes.append(helper.make_node("Concat", ["k_views", name + "_tail"], [name + "_vshape"], axis=0))
    nodes.append(helper.make_node("Reshape", [name, name + "_vshape"], [out]))


def _interface(model: onnx.ModelProto) -> tuple[tuple[int, ...], ...]:
    """The static dimensions of the input and of each output (input size, classes, CAM)."""
    return tuple(tuple(d.dim_value for d in v.type.tensor_type.shape.dim[1:])
                 for v in [*model.graph.input, *model.graph.output])


def build_ensemble(members: list[Path], tta_flip: bool, temperature: float) -> onnx.ModelProto:
    """The ensemble graph of the member ONNX files (each with the single-model interface)."""
    if not members:
        raise ValueError("an ensemble needs at least one member")
    views = 2 if tta_flip else 1
    first = onnx.load(str(members[0]))
    image = next(i for i in first.graph.input if i.name == "image")
    nodes: list[onnx.NodeProto] = []
    inits = [
        *([_const("k_inv_members", [1.0 / len(members)], np.float32)] if len(members) > 1 else []),
        _const("k_inv_t", [1.0 / temperature], np.float32),
        _const("k_flip_start", [-1]), _const("k_flip_end", [-_BIG]), _const("k_flip_step", [-1]),
        _const("k_axis_w", [3]), _const("k_axis_w5", [4]),
        _const("k_views", [views, -1]),
        _const("k_zero", [0]),
    ]
    nodes.append(helper.make_node("Shape", ["image"], ["n_batch"], start=0, end=1))
    if tta_flip:
        nodes.append(helper.make_node("Slice", ["image", "k_flip_start", "k_flip_end", "k_axis_w",
                                                "k_flip_step"], ["image_mirror"]))
        nodes.append(helper.make_node("Concat", ["image", "image_mirror"], ["views"], axis=0))
    else:
        nodes.append(helper.make_node("Identity", ["image"], ["views"]))
    logits, cams = [], []
    for i, path in enumerate(members):
        model = onnx.load(str(path))
        if model.opset_import[0].version != OPSET:
            raise ValueError(f"{path.name}: opset {model.opset_import[0].version}, expected {OPSET}")
        if _interface(model) != _interface(first):
            raise ValueError(f"{path.name}: input size or classes {_interface(model)} differ from "
                             f"the first member's {_interface(first)}")
        p = f"m{i}_"
        model = onnx.compose.add_prefix(model, p)
        nodes.append(helper.make_node("Identity", ["views"], [p + "image"]))
        nodes.extend(model.graph.node)
        inits.extend(model.graph.initializer)
        # N*views x C -> views x N x C -> mean over the views
        _split_views(nodes, p + "logits", p + "logits_v")
        nodes.append(helper.make_node("ReduceMean", [p + "logits_v"], [p + "logits_m"], axes=[0],
                                      keepdims=0))
        logits.append(p + "logits_m")
        _split_views(nodes, p + "cam", p + "cam_v")
        if tta_flip:
            nodes.append(helper.make_node("Split", [p + "cam_v"], [p + "cam_a", p + "cam_b"], axis=0))
            nodes.append(helper.make_node("Slice", [p + "cam_b", "k_flip_start", "k_flip_end",
                                                    "k_axis_w5", "k_flip_step"], [p + "cam_b_back"]))
            nodes.append(helper.make_node("Concat", [p + "cam_a", p + "cam_b_back"], [p + "cam_aligned"],
                                          axis=0))
            nodes.append(helper.make_node("ReduceMean", [p + "cam_aligned"], [p + "cam_m"], axes=[0],
                                          keepdims=0))
        else:
            nodes.append(helper.make_node("ReduceMean", [p + "cam_v"], [p + "cam_m"], axes=[0],
                                          keepdims=0))
        cams.append(p + "cam_m")
        if i == 0:
            # the first N rows of the batch are the slices themselves
            nodes.append(helper.make_node("Slice", [p + "embedding", "k_zero", "n_batch", "k_zero"],
                                          ["embedding"]))
    _mean(nodes, logits, "logits")
    _mean(nodes, cams, "cam")
    nodes.append(helper.make_node("Mul", ["logits", "k_inv_t"], ["logits_t"]))
    nodes.append(helper.make_node("Softmax", ["logits_t"], ["probabilities"], axis=1))

    def out(name: str, rank: int) -> onnx.ValueInfoProto:
        return helper.make_tensor_value_info(name, TensorProto.FLOAT, ["batch"] + [None] * (rank - 1))

    graph = helper.make_graph(
        nodes, "ensemble", [image],
        [out("probabilities", 2), out("logits", 2), out("embedding", 2), out("cam", 4)],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="medvault.training.ensemble")
    model.ir_version = first.ir_version
    onnx.checker.check_model(model)
    return model


def save(model: onnx.ModelProto, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))


def _validation_logits(path: Path, name: str, data_dir: Path | None,
                       threads: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Raw logits of the graph at ``path`` on the internal validation split, with its labels."""
    from medvault.training.calls import internal_split, run_files
    from medvault.training.export import ort_session

    folder, prep = internal_split(name, data_dir)
    session = ort_session(path, threads)
    val = np.flatnonzero(prep.split == "val")
    out, _ = run_files(session, [folder / prep.paths[i] for i in val],
                       int(session.get_inputs()[0].shape[-1]), ("logits",))
    return out["logits"], prep.y[val], list(prep.labels)


def make_ensemble(name: str, members: list[Path], tta_flip: bool, out_dir: Path,
                  data_dir: Path | None = None, threads: int = 2,
                  progress: Callable[[dict[str, Any]], None] = lambda m: None) -> dict[str, Any]:
    """Build, calibrate (internal validation only), export and card an ensemble of ``members``.

    The card starts from the first member's (same input, labels, retrieval embedding) and
    records every member's file, SHA-256 and training command. The call rule is refitted
    afterwards (``medvault fit-call``), as for any new weights.
    """
    import datetime as dt
    import json
    import shutil
    import tempfile

    from medvault.core.ml.call import file_sha256
    from medvault.training.evaluate import classification_report, fit_temperature, softmax
    from medvault.training.export import latency_ms, target_report
    from medvault.training.finalize import card_document
    from medvault.training.train import task_metrics

    members = [Path(m) for m in members]
    cards = [json.loads(m.with_suffix(".json").read_text()) for m in members]
    if any(c["name"] != name for c in cards):
        raise ValueError(f"every member must be a {name} model")
    with tempfile.TemporaryDirectory() as tmp:
        probe = Path(tmp) / "probe.onnx"
        save(build_ensemble(members, tta_flip, 1.0), probe)
        logits, y, labels = _validation_logits(probe, name, data_dir, threads)
    if labels != cards[0]["labels"]:
        raise ValueError(f"labels {labels} differ from the card's {cards[0]['labels']}")
    temperature = round(fit_temperature(logits, y), 4)
    out_dir.mkdir(parents=True, exist_ok=True)
    onnx_path = out_dir / f"{name}.onnx"
    save(build_ensemble(members, tta_flip, temperature), onnx_path)
    probs = softmax(logits, temperature)
    size = int(cards[0]["input"]["shape"][-1])
    card: dict[str, Any] = json.loads(json.dumps(cards[0]))
    for key in ("call", "evaluation", "known_failure_modes"):
        card.pop(key, None)  # refitted / re-evaluated for these weights
    flags = " --tta-flip" if tta_flip else ""
    card.update({
        "version": ENSEMBLE_VERSION,
        "file": onnx_path.name,
        "sha256": file_sha256(onnx_path),
        "size_bytes": onnx_path.stat().st_size,
        "created": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    })
    card["outputs"] = {
        **card["outputs"],
        "temperature": temperature,
        "probabilities": "N x C calibrated class probabilities = softmax(logits / T)",
        "logits": "N x C: the mean of the members' raw logits over the views"
                  + (" (the slice and its left-right mirror image)" if tta_flip else ""),
        "embedding": card["outputs"]["embedding"] + "; the first member's, on the slice itself",
        "cam": "N x C x h x w: the mean of the members' class activation maps"
               + (" (the mirror view's mirrored back)" if tta_flip else "")
               + "; upsample the predicted class's map to the padded square, crop the padding, "
                 "clip at 0 and scale to [0, 1]",
    }
    if tta_flip:  # the graph already averages the mirror view's map: serving must not again
        for key in ("cam_flip_average", "cam_flip_average_note"):
            card["outputs"].pop(key, None)
    card["architecture"] = {
        "type": f"ensemble of {len(members)} CompactNets"
                + (" with left-right flip averaging" if tta_flip else "")
                + ", one ONNX graph (medvault.training.ensemble)",
        "members": [{"sha256": c["sha256"], "command": c["training"]["command"],
                     "seed": c["training"]["recipe"].get("seed", c["training"].get("seed")),
                     "architecture": c["architecture"]} for c in cards],
        "views": ["slice", "left-right mirror"] if tta_flip else ["slice"],
        "parameters": int(sum(c["architecture"]["parameters"] for c in cards)),
    }
    card["training"] = {
        "command": f"medvault ensemble {name} --members "
                   + " ".join(str(m) for m in members) + flags,
        "members": [c["training"] for c in cards],
        "ensemble": "members trained separately (each command above); the ensemble's "
                    "temperature fitted on the internal validation split (NLL of the "
                    "averaged logits)",
    }
    uncal, cal = classification_report(softmax(logits), y, labels), classification_report(probs, y, labels)
    tasks = task_metrics(name, labels, probs, y)
    card["validation"] = {
        "note": cards[0]["validation"]["note"],
        "uncalibrated": uncal, "temperature": temperature, "calibrated": cal,
        **tasks,
        **({"recipe_selection": cards[0]["validation"]["recipe_selection"]}
           if "recipe_selection" in cards[0]["validation"] else {}),
    }
    card["targets"] = target_report(name, {"metrics": {"calibrated": cal}, "task_metrics": tasks,
                                           "retrieval": card["retrieval"]})
    card["onnx"] = {"opset": OPSET, "cpu_latency_ms_batch1_1thread_median":
                    round(latency_ms(onnx_path, size, threads=1), 2)}
    (out_dir / f"{name}.json").write_text(json.dumps(card, indent=1) + "\n")
    (out_dir / f"{name}.md").write_text(card_document(card))
    for gate in ("domain.onnx", "domain.json", "domain.md"):
        source = members[0].parent / gate
        if source.exists() and not (out_dir / gate).exists():
            shutil.copy2(source, out_dir / gate)
    progress({"event": "ensemble", "onnx": str(onnx_path), "temperature": temperature,
              "val_accuracy": cal["accuracy"], "ece": cal["ece_15_bins"],
              "latency_ms": card["onnx"]["cpu_latency_ms_batch1_1thread_median"]})
    return card
