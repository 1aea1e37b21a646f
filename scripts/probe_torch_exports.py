"""Probe: do small PyTorch models, as both exporters write them, import into graphexec exactly?

    python scripts/probe_torch_exports.py [--only NAME_SUBSTRING] [--dynamic]

Needs torch (``pip install torch==2.13.0 onnxscript``); the tests do not. Each model (eval mode,
CPU, fixed shapes unless ``--dynamic`` makes the batch axis symbolic) is exported with the
TorchScript exporter (``dynamo=False``) and with dynamo (``dynamo=True``), at opsets 17 and 18,
imported with ``graphexec.onnx_io.import_onnx``, run
forward and compared with PyTorch (float32, rtol 1e-4, atol 1e-5); then backward with a fixed
upstream gradient, compared with torch autograd for the float input and for every parameter the
export writes as it is (by name). One row per model/exporter/opset:

    ok            forward (and gradients) match
    refused: ...  import_onnx raised OnnxImportError (the message, shortened)
    WRONG: ...    imported and ran, but a value differs from PyTorch
    crash: ...    any other exception (from import, forward or backward)
    no export     torch could not export the model (not graphexec's concern)
"""

from __future__ import annotations

import argparse
import io
import re
import warnings
from collections import Counter
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

import graphexec as gx
from graphexec.onnx_io import OnnxImportError, import_onnx
from graphexec.onnx_io.translate import clean_name

RTOL, ATOL = 1e-4, 1e-5
G = torch.Generator().manual_seed(0)


def rand(*shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=G)


class Fn(nn.Module):
    """A module around a function of x (and parameters-free ops)."""

    def __init__(self, fn: Callable[..., torch.Tensor], *mods: nn.Module) -> None:
        super().__init__()
        self.fn, self.mods = fn, nn.ModuleList(mods)

    def forward(self, *args: torch.Tensor) -> torch.Tensor:
        return self.fn(*args, *self.mods)


class BasicBlock(nn.Module):
    """ResNet BasicBlock with a projection shortcut (stride 2, channels 4 -> 8)."""

    def __init__(self) -> None:
        super().__init__()
        self.c1, self.b1 = nn.Conv2d(4, 8, 3, 2, 1, bias=False), nn.BatchNorm2d(8)
        self.c2, self.b2 = nn.Conv2d(8, 8, 3, 1, 1, bias=False), nn.BatchNorm2d(8)
        self.sc = nn.Sequential(nn.Conv2d(4, 8, 1, 2, bias=False), nn.BatchNorm2d(8))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.b1(self.c1(x)))
        return F.relu(self.b2(self.c2(y)) + self.sc(x))


class Transformerish(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.ln, self.fc1, self.fc2 = nn.LayerNorm(8), nn.Linear(8, 16), nn.Linear(16, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.fc2(F.gelu(self.fc1(self.ln(x))))


class Loss(nn.Module):
    def __init__(self, fn: Callable[..., torch.Tensor], n_out: int = 4) -> None:
        super().__init__()
        self.fc, self.fn = nn.Linear(6, n_out), fn

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.fn(self.fc(x), y)


def seq(*mods: nn.Module) -> nn.Module:
    return nn.Sequential(*mods)


def conv_act(act: nn.Module) -> nn.Module:
    return seq(nn.Conv2d(3, 4, 3, padding=1), act)


def models() -> dict[str, tuple[nn.Module, tuple[torch.Tensor, ...]]]:
    img, vec, labels = rand(2, 3, 8, 8), rand(5, 6), torch.tensor([0, 3, 1, 2, 3])
    ig = torch.tensor([0, -100, 1, 2, -100])
    bn4 = nn.BatchNorm2d(4)
    with torch.no_grad():
        bn4.running_mean.uniform_(-0.5, 0.5, generator=G)
        bn4.running_var.uniform_(0.5, 1.5, generator=G)
    m: dict[str, tuple[nn.Module, tuple[torch.Tensor, ...]]] = {
        # --- CNN classifier pieces
        "conv_stride_pad": (seq(nn.Conv2d(3, 4, 3, stride=2, padding=1)), (img,)),
        "conv_dilation": (seq(nn.Conv2d(3, 4, 3, dilation=2, padding=2)), (img,)),
        "conv_groups": (seq(nn.Conv2d(4, 6, 3, groups=2, padding=1)), (rand(2, 4, 8, 8),)),
        "conv_depthwise": (seq(nn.Conv2d(4, 4, 3, groups=4, padding=1)), (rand(2, 4, 8, 8),)),
        "conv_nobias": (seq(nn.Conv2d(3, 4, 1, bias=False)), (img,)),
        "conv_bn_relu": (seq(nn.Conv2d(3, 4, 3, padding=1), bn4, nn.ReLU()), (img,)),
        "relu6": (conv_act(nn.ReLU6()), (img,)),
        "hardtanh": (conv_act(nn.Hardtanh(-0.5, 0.7)), (img,)),
        "silu": (conv_act(nn.SiLU()), (img,)),
        "gelu": (conv_act(nn.GELU()), (img,)),
        "gelu_tanh": (conv_act(nn.GELU(approximate="tanh")), (img,)),
        "mish": (conv_act(nn.Mish()), (img,)),
        "softplus": (conv_act(nn.Softplus()), (img,)),
        "softplus_beta": (conv_act(nn.Softplus(beta=2.0)), (img,)),
        "elu": (conv_act(nn.ELU(0.7)), (img,)),
        "leaky_relu": (conv_act(nn.LeakyReLU(0.1)), (img,)),
        "prelu": (conv_act(nn.PReLU(4)), (img,)),
        "prelu_single": (seq(nn.Linear(6, 4), nn.PReLU()), (vec,)),
        "hardswish": (conv_act(nn.Hardswish()), (img,)),
        "hardsigmoid": (conv_act(nn.Hardsigmoid()), (img,)),
        "sigmoid": (conv_act(nn.Sigmoid()), (img,)),
        "tanh": (conv_act(nn.Tanh()), (img,)),
        "gap_flatten": (seq(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                            nn.Linear(4, 3)), (img,)),
        "basic_block": (BasicBlock(), (rand(2, 4, 8, 8),)),
        "mobilenet_block": (seq(nn.Conv2d(4, 4, 3, padding=1, groups=4, bias=False),
                                nn.BatchNorm2d(4), nn.ReLU6(), nn.Conv2d(4, 8, 1, bias=False),
                                nn.BatchNorm2d(8), nn.ReLU6()), (rand(2, 4, 8, 8),)),
        "maxpool_ceil": (seq(nn.MaxPool2d(3, 2, ceil_mode=True)), (rand(2, 3, 8, 8),)),
        "maxpool_pad": (seq(nn.MaxPool2d(3, 2, padding=1)), (img,)),
        "avgpool_ceil": (seq(nn.AvgPool2d(3, 2, ceil_mode=True)), (img,)),
        "avgpool_pad": (seq(nn.AvgPool2d(3, 2, padding=1)), (img,)),
        "avgpool_pad_nocount": (seq(nn.AvgPool2d(3, 2, padding=1, count_include_pad=False)),
                                (img,)),
        "torch_flatten": (Fn(lambda x, c: torch.flatten(c(x), 1), nn.Conv2d(3, 2, 3)), (img,)),
        "view_flatten": (Fn(lambda x, c: c(x).view(x.size(0), -1), nn.Conv2d(3, 2, 3)), (img,)),
        "reshape_flatten": (Fn(lambda x, c: c(x).reshape(2, -1), nn.Conv2d(3, 2, 3)), (img,)),
        "dropout_eval": (seq(nn.Linear(6, 8), nn.Dropout(0.5), nn.Linear(8, 4)), (vec,)),
        # --- MLP pieces
        "linear_nobias": (seq(nn.Linear(6, 4, bias=False)), (vec,)),
        "layernorm": (seq(nn.Linear(6, 8), nn.LayerNorm(8)), (vec,)),
        "transformer_mlp": (Transformerish(), (rand(2, 3, 8),)),
        "softmax_dim1": (Fn(lambda x, f: F.softmax(f(x), dim=1), nn.Linear(6, 4)), (vec,)),
        "softmax_last": (Fn(lambda x, f: F.softmax(f(x), dim=-1), nn.Linear(8, 4)),
                         (rand(2, 3, 8),)),
        "log_softmax_dim1": (Fn(lambda x, f: F.log_softmax(f(x), dim=1), nn.Linear(8, 4)),
                             (rand(2, 3, 8),)),
        "log_softmax_last": (Fn(lambda x, f: F.log_softmax(f(x), dim=-1), nn.Linear(6, 4)),
                             (vec,)),
        "cross_entropy": (Loss(F.cross_entropy), (vec, labels)),
        "cross_entropy_sum": (Loss(lambda s, y: F.cross_entropy(s, y, reduction="sum")),
                              (vec, labels)),
        "cross_entropy_ignore": (Loss(lambda s, y: F.cross_entropy(s, y, ignore_index=-100)),
                                 (vec, ig)),
        "cross_entropy_ignore0": (Loss(lambda s, y: F.cross_entropy(s, y, ignore_index=0)),
                                  (vec, labels)),
        "nll_loss": (Loss(lambda s, y: F.nll_loss(F.log_softmax(s, 1), y)), (vec, labels)),
        "nll_loss_sum_ignore": (Loss(lambda s, y: F.nll_loss(F.log_softmax(s, 1), y,
                                                             ignore_index=1, reduction="sum")),
                                (vec, labels)),
        "mse_loss": (Loss(F.mse_loss, 3), (vec, rand(5, 3))),
        "mse_loss_sum": (Loss(lambda s, y: F.mse_loss(s, y, reduction="sum"), 3),
                         (vec, rand(5, 3))),
        # --- tensor ops
        "cat": (Fn(lambda x, f: torch.cat([f(x), x], 1), nn.Linear(6, 4)), (vec,)),
        "mean_hw": (Fn(lambda x, c: c(x).mean(dim=(2, 3)), nn.Conv2d(3, 4, 3)), (img,)),
        "sum_dim1": (Fn(lambda x, f: f(x).sum(1), nn.Linear(6, 4)), (vec,)),
        "permute": (Fn(lambda x, c: c(x).permute(0, 2, 3, 1), nn.Conv2d(3, 4, 1)), (img,)),
        "transpose": (Fn(lambda x, f: f(x).transpose(1, 2), nn.Linear(8, 4)), (rand(2, 3, 8),)),
        "matmul_3d": (Fn(lambda x, f: torch.matmul(f(x), x.transpose(1, 2)), nn.Linear(8, 8)),
                      (rand(2, 3, 8),)),
        "bmm_param": (Fn(lambda x, f: f(x) @ f(x).transpose(-1, -2), nn.Linear(8, 4)),
                      (rand(2, 3, 8),)),
        "scale_shift": (Fn(lambda x, f: f(x) * 2 + 1, nn.Linear(6, 4)), (vec,)),
        "clamp": (Fn(lambda x, f: f(x).clamp(-0.3, 0.4), nn.Linear(6, 4)), (vec,)),
        "clamp_min": (Fn(lambda x, f: f(x).clamp(min=0.1), nn.Linear(6, 4)), (vec,)),
        "pow2": (Fn(lambda x, f: f(x).pow(2), nn.Linear(6, 4)), (vec,)),
        "pow3": (Fn(lambda x, f: f(x) ** 3, nn.Linear(6, 4)), (vec,)),
        "sqrt_abs": (Fn(lambda x, f: torch.sqrt(torch.abs(f(x)) + 0.1), nn.Linear(6, 4)), (vec,)),
        "exp_log": (Fn(lambda x, f: torch.log(torch.exp(f(x)) + 1.0), nn.Linear(6, 4)), (vec,)),
        "rsqrt": (Fn(lambda x, f: torch.rsqrt(f(x) ** 2 + 1.0), nn.Linear(6, 4)), (vec,)),
        "reciprocal": (Fn(lambda x, f: 1.0 / (f(x) ** 2 + 1.0), nn.Linear(6, 4)), (vec,)),
        "where_const": (Fn(lambda x, f: torch.where(torch.tensor([True, False, True, False]),
                                                    f(x), -f(x)), nn.Linear(6, 4)), (vec,)),
        "where_mask": (Fn(lambda x, f: torch.where(f(x) > 0, f(x), 0.1 * f(x)),
                          nn.Linear(6, 4)), (vec,)),
        "max_dim": (Fn(lambda x, f: f(x).max(dim=1).values, nn.Linear(6, 4)), (vec,)),
        "amax": (Fn(lambda x, f: f(x).amax(dim=1), nn.Linear(6, 4)), (vec,)),
        "unsqueeze_squeeze": (Fn(lambda x, f: f(x).unsqueeze(1).squeeze(1), nn.Linear(6, 4)),
                              (vec,)),
        "slice": (Fn(lambda x, f: f(x)[:, 1:3], nn.Linear(6, 4)), (vec,)),
        "chunk": (Fn(lambda x, f: f(x).chunk(2, 1)[0] * f(x).chunk(2, 1)[1], nn.Linear(6, 4)),
                  (vec,)),
        "glu": (Fn(lambda x, f: F.glu(f(x), 1), nn.Linear(6, 4)), (vec,)),
        "normalize": (Fn(lambda x, f: F.normalize(f(x), dim=1), nn.Linear(6, 4)), (vec,)),
        "var_mean": (Fn(lambda x, f: f(x) - f(x).mean(1, keepdim=True), nn.Linear(6, 4)),
                     (vec,)),
        "adaptive_avg_2": (seq(nn.AdaptiveAvgPool2d(2)), (img,)),
        "upsample_nearest": (seq(nn.Upsample(scale_factor=2)), (rand(1, 2, 3, 3),)),
        "embedding": (Fn(lambda i, e: e(i).sum(1), nn.Embedding(10, 4)),
                      (torch.tensor([[1, 2], [3, 9]]),)),
        "conv1d": (seq(nn.Conv1d(3, 4, 3, padding=1), nn.ReLU()), (rand(2, 3, 8),)),
        "batchnorm1d": (seq(nn.Linear(6, 4), nn.BatchNorm1d(4)), (vec,)),
        "groupnorm": (seq(nn.Conv2d(3, 4, 1), nn.GroupNorm(2, 4)), (img,)),
    }
    return m


def export(model: nn.Module, args: tuple[torch.Tensor, ...], dynamo: bool, opset: int,
           dynamic: bool = False) -> bytes:
    names = ["x", "y"][:len(args)]
    f = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        kw: dict[str, Any] = {"dynamo": dynamo}
        if dynamic:  # the batch size known only when the model runs, as most exports have it
            kw["dynamic_axes"] = {n: {0: "batch"} for n in names + ["out"]}
        if dynamo:
            kw["verbose"] = False
        torch.onnx.export(model, args, f, input_names=names, output_names=["out"],
                          opset_version=opset, do_constant_folding=False, **kw)
    return f.getvalue()


def torch_reference(model: nn.Module, args: tuple[torch.Tensor, ...]) -> dict[str, Any]:
    x = args[0].clone()
    floating = x.dtype.is_floating_point
    if floating:
        x.requires_grad_(True)
    model.zero_grad()
    out = model(x, *args[1:])
    u = torch.randn(out.shape, generator=torch.Generator().manual_seed(1))
    (out * u).sum().backward()
    grads = {n: p.grad.numpy() for n, p in model.named_parameters() if p.grad is not None}
    if floating:
        grads["x"] = x.grad.numpy()
    return {"out": out.detach().numpy(), "u": u.numpy(), "grads": grads,
            "params": {n: p.detach().numpy() for n, p in model.named_parameters()}}


def check(data: bytes, args: tuple[torch.Tensor, ...], ref: dict[str, Any]) -> str:
    try:
        g = import_onnx(data)
    except OnnxImportError as e:
        return "refused: " + str(e).replace("cannot import the ONNX model: ", "")[:150]
    feed = {k: a.numpy() for k, a in zip(["x", "y"], args) if k in set(g.inputs)}
    ex = gx.Executor(g)
    (key,) = g.output_map
    got = ex.forward(feed)[key]
    want = ref["out"]
    if got.shape != want.shape or not np.allclose(got, want, rtol=RTOL, atol=ATOL):
        return f"WRONG: forward differs (shape {got.shape} vs {want.shape})"
    grads = ex.backward({key: ref["u"].astype(got.dtype)})
    checked = []
    for name, want_g in ref["grads"].items():
        have = grads.get("x") if name == "x" else None
        if name != "x":
            key_p = clean_name(name)
            value, torch_value = g.params.get(key_p), ref["params"][name]
            if value is None or value.shape not in (torch_value.shape, torch_value.T.shape):
                continue  # folded, renamed or fused by the exporter: not comparable by name
            if np.array_equal(value, torch_value):
                have = grads.get(key_p)
            elif np.array_equal(value, torch_value.T):
                have = None if grads.get(key_p) is None else grads[key_p].T
            else:
                continue
        if have is None or have.shape != want_g.shape:
            return f"WRONG: no gradient for {name}"
        if not np.allclose(have, want_g, rtol=RTOL, atol=ATOL):
            err = float(np.max(np.abs(have - want_g)))
            return f"WRONG: gradient of {name} differs (max abs err {err:.2g})"
        checked.append(name)
    return f"ok ({len(checked)} grads)"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default="")
    ap.add_argument("--dynamic", action="store_true", help="export with a dynamic batch axis")
    opts = ap.parse_args()
    torch.manual_seed(0)
    counts: Counter[str] = Counter()
    rows = []
    for name, (model, args) in models().items():
        if opts.only not in name:
            continue
        model.eval()
        ref = torch_reference(model, args)
        for exporter, dynamo in (("torchscript", False), ("dynamo", True)):
            for opset in (17, 18):
                try:
                    data = export(model, args, dynamo, opset, opts.dynamic)
                except Exception as e:  # torch's messages are long, multi-line, coloured
                    first = re.sub(r"\x1b\[[0-9;]*m", "", str(e)).strip().splitlines()[:1]
                    status = f"no export: {type(e).__name__}: {''.join(first)[:80]}"
                else:
                    try:
                        status = check(data, args, ref)
                    except Exception as e:
                        status = f"crash: {type(e).__name__}: {str(e)[:150]}"
                kind = status.split(":")[0].split(" ")[0]
                kind = {"no": "no export"}.get(kind, kind)
                counts[kind] += 1
                rows.append((name, exporter, opset, status))
                print(f"{name:24s} {exporter:11s} {opset:2d}  {status}", flush=True)
    print("\nsummary:", ", ".join(f"{k} {v}" for k, v in sorted(counts.items())),
          f"(of {len(rows)})")


if __name__ == "__main__":
    main()
