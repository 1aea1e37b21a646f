"""Export small PyTorch models to ONNX as test fixtures (needs torch; the tests do not).

    python scripts/make_onnx_fixtures.py [--out tests/fixtures/onnx]

For each model and exporter it writes ``<model>_<exporter>.onnx`` and ``<model>_<exporter>.npz``
holding the fixed input ``x`` (and labels or targets ``y`` for the loss models), PyTorch's outputs
``out_<name>`` and the gradients of sum(outputs · upstream ``u_<name>``) with respect to ``x``
(``grad_x``) and to every parameter (``grad_<ONNX initializer name>``). Models are in eval
mode (BatchNorm running statistics, Dropout off); seeds are fixed, so reruns give the same data.
"""

from __future__ import annotations

import argparse
import io
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

OPSET = 17


class MLP(nn.Module):
    def __init__(self, act: nn.Module, log_softmax: bool = False):
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(6, 8), act, nn.Linear(8, 4)
        self.log_softmax = log_softmax

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.fc2(self.act(self.fc1(x)))
        return F.log_softmax(y, dim=1) if self.log_softmax else y


class Residual(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.inp, self.block, self.out = nn.Linear(6, 8), nn.Linear(8, 8), nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.inp(x))
        return self.out(h + torch.tanh(self.block(h)))


class LeNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.c1, self.c2 = nn.Conv2d(1, 4, 5, padding=2), nn.Conv2d(4, 8, 5)
        self.f1, self.f2 = nn.Linear(8 * 2 * 2, 16), nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(torch.relu(self.c1(x)), 2)
        x = F.max_pool2d(torch.relu(self.c2(x)), 2)
        x = x.view(x.size(0), -1)  # Shape -> Gather -> Unsqueeze -> Concat -> Reshape
        return self.f2(torch.relu(self.f1(x)))


class BNNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.c, self.bn = nn.Conv2d(2, 4, 3, padding=1), nn.BatchNorm2d(4)
        self.drop, self.fc = nn.Dropout(0.3), nn.Linear(4 * 3 * 3, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.avg_pool2d(torch.relu(self.bn(self.c(x))), 2)
        return self.fc(self.drop(torch.flatten(x, 1)))


class CrossEntropy(nn.Module):
    """An MLP with its F.cross_entropy loss in the graph (PyTorch writes ignore_index=-100)."""

    def __init__(self) -> None:
        super().__init__()
        self.mlp = MLP(nn.ReLU())

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(self.mlp(x), y)


class ResNetBlock(nn.Module):
    """A ResNet BasicBlock with a projection shortcut, then global pooling and a classifier.
    Fresh BatchNorms: TorchScript writes a running variance equal to the weight (all ones) as
    Identity(weight), which the import must keep a buffer of its own."""

    def __init__(self) -> None:
        super().__init__()
        self.c1, self.b1 = nn.Conv2d(2, 4, 3, 2, 1, bias=False), nn.BatchNorm2d(4)
        self.c2, self.b2 = nn.Conv2d(4, 4, 3, 1, 1, bias=False), nn.BatchNorm2d(4)
        self.sc, self.bs = nn.Conv2d(2, 4, 1, 2, bias=False), nn.BatchNorm2d(4)
        self.pool, self.fc = nn.AdaptiveAvgPool2d(1), nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.b1(self.c1(x)))
        y = F.relu(self.b2(self.c2(y)) + self.bs(self.sc(x)))
        return self.fc(torch.flatten(self.pool(y), 1))


class MobileNetBlock(nn.Module):
    """Depthwise-separable convolution with ReLU6 and Hardswish, pooled by x.mean((2, 3))."""

    def __init__(self) -> None:
        super().__init__()
        self.dw, self.b1 = nn.Conv2d(3, 3, 3, padding=1, groups=3, bias=False), nn.BatchNorm2d(3)
        self.pw, self.b2 = nn.Conv2d(3, 6, 1, bias=False), nn.BatchNorm2d(6)
        self.fc = nn.Linear(6, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu6(self.b1(self.dw(x)))
        x = F.hardswish(self.b2(self.pw(x)))
        return self.fc(x.mean(dim=(2, 3)))


class ActMLP(nn.Module):
    """The activations whose exports need the newer ops: tanh-GELU (Pow), Mish, Softplus
    (dynamo: Greater + Where), clamp (TorchScript: Cast(Constant) bounds), x.chunk (Split, or
    Slice with computed bounds), torch.sqrt / abs."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2, self.fc3 = nn.Linear(6, 8), nn.Linear(8, 8), nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.mish(F.gelu(self.fc1(x), approximate="tanh"))
        a, b = F.softplus(self.fc2(h)).clamp(-1.0, 2.5).chunk(2, 1)
        return self.fc3(a * torch.sqrt(torch.abs(b) + 0.1))


class MSE(nn.Module):
    """A linear regression with its F.mse_loss in the graph (TorchScript: Expand of both sides
    to their broadcast shape, ConstantOfShape of a run-time shape)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(6, 3)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(self.fc(x), y)


def models() -> dict[str, tuple[nn.Module, tuple[torch.Tensor, ...]]]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(5, 6, generator=g)
    acts = {"relu": nn.ReLU(), "sigmoid": nn.Sigmoid(), "tanh": nn.Tanh(),
            "leaky_relu": nn.LeakyReLU(0.2), "elu": nn.ELU(0.7)}
    out: dict[str, tuple[nn.Module, tuple[torch.Tensor, ...]]] = {
        f"mlp_{k}": (MLP(a), (x,)) for k, a in acts.items()}
    out["residual_mlp"] = (Residual(), (x,))
    out["mlp_log_softmax"] = (MLP(nn.ReLU(), log_softmax=True), (x,))
    out["lenet"] = (LeNet(), (torch.randn(3, 1, 16, 16, generator=g),))
    bn = BNNet()
    with torch.no_grad():  # running statistics that are not the defaults
        bn.bn.running_mean.uniform_(-0.5, 0.5, generator=g)
        bn.bn.running_var.uniform_(0.5, 1.5, generator=g)
    out["cnn_bn_dropout"] = (bn, (torch.randn(3, 2, 6, 6, generator=g),))
    out["cross_entropy"] = (CrossEntropy(), (x, torch.tensor([0, 3, 1, 2, 3])))
    out["resnet_block"] = (ResNetBlock(), (torch.randn(2, 2, 6, 6, generator=g),))
    mb = MobileNetBlock()
    with torch.no_grad():
        for b in (mb.b1, mb.b2):
            b.running_mean.uniform_(-0.5, 0.5, generator=g)
            b.running_var.uniform_(0.5, 1.5, generator=g)
    out["mobilenet_block"] = (mb, (torch.randn(2, 3, 5, 5, generator=g),))
    out["act_mlp"] = (ActMLP(), (x,))
    out["mse_loss"] = (MSE(), (x, torch.randn(5, 3, generator=g)))
    return out


def export(model: nn.Module, args: tuple[torch.Tensor, ...], dynamo: bool) -> bytes:
    names = ["x", "y"][:len(args)]
    f = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, args, f, input_names=names, output_names=["out"],
                          dynamic_axes={n: {0: "batch"} for n in names}, opset_version=OPSET,
                          dynamo=dynamo, do_constant_folding=False)
    return f.getvalue()


def reference(model: nn.Module, args: tuple[torch.Tensor, ...], onnx_bytes: bytes) -> dict[str, Any]:
    """PyTorch's output and gradients, keyed by the ONNX names of the inputs and initializers."""
    import onnx

    inits = {t.name: onnx.numpy_helper.to_array(t)
             for t in onnx.load_from_string(onnx_bytes).graph.initializer}
    x = args[0].clone().requires_grad_(True)
    out = model(x, *args[1:])
    u = torch.randn(out.shape, generator=torch.Generator().manual_seed(1))
    (out * u).sum().backward()
    data: dict[str, Any] = {"x": args[0].numpy(), "out_out": out.detach().numpy(),
                            "u_out": u.numpy(), "grad_x": x.grad.numpy()}
    if len(args) > 1:
        data["y"] = args[1].numpy()
    for name, p in model.named_parameters():
        # the exporters keep PyTorch's names; dynamo folds eval BatchNorm into the conv weights,
        # whose gradient is then another one: only parameters written as they are count
        if name in inits and np.array_equal(inits[name], p.detach().numpy()):
            data[f"grad_{name}"] = p.grad.numpy()
    return data


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="tests/fixtures/onnx")
    out = Path(ap.parse_args().out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    for name, (model, args) in models().items():
        model.eval()
        for exporter, dynamo in (("torchscript", False), ("dynamo", True)):
            try:
                data = export(model, args, dynamo)
            except Exception as e:  # dynamo needs onnxscript; say so and carry on
                print(f"skip {name} {exporter}: {type(e).__name__}: {str(e)[:100]}")
                continue
            model.zero_grad()
            (out / f"{name}_{exporter}.onnx").write_bytes(data)
            np.savez(out / f"{name}_{exporter}.npz", **reference(model, args, data))
            print(f"wrote {name}_{exporter}.onnx ({len(data)} bytes)")


if __name__ == "__main__":
    main()
