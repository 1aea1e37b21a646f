"""Figures of training: loss and accuracy per epoch, and the lecture's grid of decision boundaries.

matplotlib is an optional extra (``pip install graphexec[plot]``). Figures are drawn on a
``matplotlib.figure.Figure`` with the Agg canvas, never through pyplot, so plotting neither
opens a window nor changes the backend of the calling program.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from graphexec.checkpoint import History
from graphexec.errors import GraphexecError
from graphexec.fileformat.atomic import atomic_write
from graphexec.graph import Graph
from graphexec.train import predict

__all__ = ["Panel", "PlotError", "check_target", "decision_boundaries", "training_curves"]

GRID_STEP = 0.02  # mesh spacing of a decision-boundary panel, in data units
MARGIN = 0.2  # room around the data in a panel


class PlotError(GraphexecError):
    """A figure cannot be drawn (matplotlib missing, nothing to draw, unwritable file)."""


@dataclass(frozen=True)
class Panel:
    """One decision-boundary panel: a trained 2-D classifier and its title."""

    graph: Graph
    title: str


def check_target(path: str | os.PathLike[str]) -> None:
    """Everything that can stop a figure from being written, checked before a long run:
    matplotlib installed, a format it can write, the folder there.

    Raises:
        PlotError: Naming what is missing and what to do.
    """
    where = os.fspath(path)
    try:
        from matplotlib.backend_bases import FigureCanvasBase
    except ImportError as e:
        raise PlotError(f"cannot draw {where!r}: drawing figures needs matplotlib: "
                        "pip install graphexec[plot]") from e
    fmt = os.path.splitext(where)[1].lstrip(".").lower() or "png"
    formats = FigureCanvasBase.get_supported_filetypes()
    if fmt not in formats:
        raise PlotError(f"cannot draw {where!r}: expected a figure file ending in one of "
                        f"{', '.join('.' + f for f in sorted(formats))}, found .{fmt}")
    folder = os.path.dirname(os.path.abspath(where))
    if not os.path.isdir(folder):
        raise PlotError(f"cannot draw {where!r}: the folder {folder!r} does not exist; "
                        "create it first")


def _figure(width: float, height: float) -> Any:
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as e:
        raise PlotError("drawing figures needs matplotlib: pip install graphexec[plot]") from e
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Any, path: str | os.PathLike[str]) -> None:
    """Render in memory (format from the file name), then write atomically."""
    buf = io.BytesIO()
    fmt = os.path.splitext(os.fspath(path))[1].lstrip(".").lower() or "png"
    try:
        fig.savefig(buf, format=fmt, dpi=100)
        atomic_write(path, [buf.getvalue()])
    except (OSError, ValueError) as e:
        raise PlotError(f"cannot write the figure to {os.fspath(path)!r}: {e}") from e


def training_curves(history: History, path: str | os.PathLike[str], *, title: str = "") -> None:
    """Draw the loss (left) and the training / validation accuracy (right) per epoch.

    Args:
        history: What :func:`graphexec.fit` returned (or read back from a checkpoint).
        path: Output file; the format follows the extension (.png, .svg, .pdf).
        title: Figure title.
    """
    if history.epochs == 0:
        raise PlotError("the history has no epochs to draw")
    fig = _figure(10, 4)
    ax_loss, ax_acc = fig.subplots(1, 2)
    epochs = np.arange(1, history.epochs + 1)
    ax_loss.plot(epochs, history.loss, color="tab:blue")
    ax_loss.set(xlabel="epoch", ylabel="training loss", title="loss")
    ax_acc.plot(epochs, history.train_acc, label="train", color="tab:blue")
    if history.val_acc:
        ax_acc.plot(epochs, history.val_acc, label="validation", color="tab:orange")
    if history.best_epoch is not None:
        ax_acc.axvline(history.best_epoch, color="gray", linestyle=":", label="best (kept)")
    ax_acc.set(xlabel="epoch", ylabel="accuracy", title="accuracy")
    ax_acc.legend(loc="lower right")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    _save(fig, path)


def _mesh(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    lo, hi = X.min(axis=0) - MARGIN, X.max(axis=0) + MARGIN
    return np.meshgrid(np.arange(lo[0], hi[0], GRID_STEP), np.arange(lo[1], hi[1], GRID_STEP))


def _draw_panel(ax: Any, panel: Panel, X: np.ndarray, y: np.ndarray,
                xx: np.ndarray, yy: np.ndarray) -> None:
    dtype = next(d.dtype for d in panel.graph.input_decls if d.name == "x")
    grid = np.c_[xx.ravel(), yy.ravel()].astype(dtype)
    zz = predict(panel.graph, grid).argmax(axis=1).reshape(xx.shape)
    n_classes = max(int(y.max()) + 1, int(zz.max()) + 1)
    levels = np.arange(n_classes + 1) - 0.5
    ax.contourf(xx, yy, zz, levels=levels, cmap="Spectral", alpha=0.8)
    ax.scatter(X[:, 0], X[:, 1], c=y, s=12, cmap="Spectral", edgecolors="k", linewidths=0.5,
               vmin=-0.5, vmax=n_classes - 0.5)
    ax.set(xlim=(xx.min(), xx.max()), ylim=(yy.min(), yy.max()), xticks=[], yticks=[])
    ax.set_title(panel.title, fontsize=10)


def decision_boundaries(panels: Sequence[Panel], X: np.ndarray, y: np.ndarray,
                        path: str | os.PathLike[str], *, ncols: int, title: str = "") -> None:
    """Draw each classifier's decision regions over the 2-D data, one panel each, row by row.

    Args:
        panels: Trained classifiers on 2-D inputs (N, 2), with their titles.
        X: The data points to draw, shape (N, 2).
        y: Their labels (N,), which colour the points.
        path: Output file; the format follows the extension.
        ncols: Panels per row.
        title: Figure title.
    """
    if not panels:
        raise PlotError("no classifiers to draw")
    if X.ndim != 2 or X.shape[1] != 2:
        raise PlotError(f"decision boundaries are drawn in the plane: need data of shape (N, 2), "
                        f"got {X.shape}")
    nrows = -(-len(panels) // ncols)
    fig = _figure(3.2 * ncols, 3.2 * nrows + (0.4 if title else 0))
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
    xx, yy = _mesh(X)
    for ax, panel in zip(axes, panels):
        _draw_panel(ax, panel, X, y, xx, yy)
    for ax in axes[len(panels):]:
        ax.set_axis_off()
    if title:
        fig.suptitle(title)
    _save(fig, path)
