"""Clocks and the timing thread policy: how a call's time is read, the same way for the gate's
rounds and for headroom."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch


def synchronizer(device: torch.device) -> Callable[[], None]:
    """Wait for queued device work, so a timer around a call sees all of it."""
    if device.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    if device.type == "mps":
        return torch.mps.synchronize
    return lambda: None


@contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """torch's intra-op thread count set to `threads` inside the block (None: left as is).

    One thread keeps the speedup steady beside a busy neighbour: with more threads than free
    cores, the merged and unmerged calls lose unequal shares to oversubscription (see README).
    """
    if threads is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)
