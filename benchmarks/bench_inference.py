"""Inference latency of 784-512-512-10 (float32) at batch 256 and batch 1.

graphexec ``gx.run(g, x=..., outputs=["scores"])`` on the training graph (only the nodes that the
scores need run) vs the forward pass written in numpy vs onnxruntime (the same network built with
onnx.helper) vs PyTorch eager under ``torch.inference_mode()``.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np
from harness import Row, Settings, compare, peer
from nets import NumpyMLP, batch, gx_mlp, init_params, onnx_model, torch_mlp

import graphexec as gx

SIZES = [784, 512, 512, 10]


def contenders(n: int, dtype: str = "float32",
               threads: int | None = None) -> tuple[dict[str, Any], list[str]]:
    params = init_params(SIZES, dtype)
    x, _ = batch(SIZES, n, dtype)
    g = gx_mlp(params, dtype)
    net = NumpyMLP(params, 0.0)
    expected = net.predict(x)
    out: dict[str, Any] = {"numpy": lambda: net.predict(x),
                           "graphexec": lambda: gx.run(g, {"x": x}, outputs=["scores"])}
    notes = []
    ort, note = peer("onnxruntime")
    onnx, note2 = peer("onnx")
    if ort is not None and onnx is not None:
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        sess = ort.InferenceSession(onnx_model(params), options,
                                    providers=["CPUExecutionProvider"])
        out["onnxruntime"] = lambda: sess.run(None, {"x": x})
    else:
        notes.append(note or note2)
    torch, note = peer("torch")
    if torch is not None:
        model = torch_mlp(torch, params)
        tx = torch.from_numpy(x)

        def torch_predict() -> Any:
            with torch.inference_mode():
                return model(tx)

        out["pytorch"] = torch_predict
    else:
        notes.append(note)
    tol = 1e-4 if dtype == "float32" else 1e-10
    np.testing.assert_allclose(out["graphexec"]()["scores"], expected, rtol=tol, atol=tol)
    if "onnxruntime" in out:
        np.testing.assert_allclose(out["onnxruntime"]()[0], expected, rtol=tol, atol=tol)
    return out, notes


def run(settings: Settings) -> list[Row]:
    rows = []
    for n in (256, 1):
        cs, notes = contenders(n, threads=settings.threads)
        res = compare(cs, settings)
        case = f"784-512-512-10 N={n} float32"
        for name, (t, r) in res.items():
            rows.append(Row("inference", case, name, t, r,
                            goal="≤ 1.05×" if name == "graphexec" and n == 256 else ""))
        rows += [Row("inference", case, "peer", None, None, note=nt) for nt in notes]
        print(f"  inference N={n}: " + ", ".join(
            f"{k} {v[0] * 1e6:.1f} µs ({v[1]:.2f}×)" for k, v in res.items()), file=sys.stderr)
    return rows


if __name__ == "__main__":
    from harness import table

    print(table(run(Settings.make("--quick" in sys.argv))))
