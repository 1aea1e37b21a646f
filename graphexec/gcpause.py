"""Pause the cyclic garbage collector while a large graph is built.

Loading a graph allocates a few dozen objects per node and frees almost none of them, so the
collector's thresholds trigger again and again, and each full collection walks every object
made so far: at a million nodes the collections cost more than the work itself. Nothing made
while loading forms garbage cycles that must go at once; they are collected on the next run
after the pause ends.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["collector_paused"]


@contextmanager
def collector_paused() -> Iterator[None]:
    """Run the block with automatic collection off; afterwards it is on again if it was on
    before (nested and concurrent pauses end with the collector as the outermost found it)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
