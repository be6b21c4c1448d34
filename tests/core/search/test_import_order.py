"""Regression: importing the search core must not break ONNX Runtime in the same process.

usearch's numkong extension, once loaded, made the next ``InferenceSession`` segfault; a
server process that searched first and analysed an upload second crashed.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest


def test_onnx_session_after_importing_search() -> None:
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    code = textwrap.dedent("""
        import numpy as np
        from medvault.core.search import HnswIndex
        index = HnswIndex(4)
        index.add([1, 2], np.eye(4, dtype=np.float32)[:2])
        import onnx
        from onnx import TensorProto, helper
        node = helper.make_node("Relu", ["x"], ["y"])
        graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
        model.ir_version = 8
        import onnxruntime as ort
        sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        out = sess.run(None, {"x": np.array([[-1, 2, -3, 4]], dtype=np.float32)})[0]
        assert out.tolist() == [[0, 2, 0, 4]]
        print("ok")
    """)
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and "ok" in res.stdout, res.stderr[-2000:]
