"""The trainer's progress bar: tqdm on stderr when asked for and installed, else nothing."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from graphexec.errors import TrainingError

if TYPE_CHECKING:
    from graphexec.training.train import EpochEnd

__all__ = ["has_tqdm", "progress_bar", "summary"]


class _NoBar:
    """Stands in for a tqdm bar when progress is off."""

    def __enter__(self) -> _NoBar:  # noqa: PYI034 (a private stand-in, never subclassed)
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def update(self, n: int = 1) -> None:
        return None

    def set_description(self, text: str) -> None:
        return None

    def set_postfix_str(self, text: str) -> None:
        return None


def has_tqdm() -> bool:
    """True if the optional progress bar library is installed."""
    try:
        import tqdm  # noqa: F401
    except ImportError:
        return False
    return True


def progress_bar(progress: bool | None, total: int, initial: int) -> Any:
    show = sys.stderr.isatty() if progress is None else bool(progress)
    if not show or (progress is None and not has_tqdm()):
        return _NoBar()
    try:
        from tqdm import tqdm
    except ImportError as e:
        raise TrainingError("progress=True needs tqdm: pip install graphexec[progress] "
                            "(or pass progress=False)") from e
    return tqdm(total=total, initial=initial, unit="step", file=sys.stderr, leave=True,
                dynamic_ncols=True)


def summary(info: EpochEnd) -> str:
    """The bar's postfix after an epoch: loss and accuracies."""
    text = f"loss {info.loss:.4f} train {info.train_acc or 0:.1%}"
    return text if info.val_acc is None else f"{text} val {info.val_acc:.1%}"

