"""Peak memory of one pipeline call: CUDA's allocator counter, Linux's resident-set high-water
mark, or an honest "not measured" where neither is reliable."""

from __future__ import annotations

import ctypes
import ctypes.util
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from pytest_tome.gate.results import MEMORY_CUDA, MEMORY_RSS, NOT_MEASURED

_CLEAR_REFS = Path("/proc/self/clear_refs")
_STATUS = Path("/proc/self/status")


class PeakMemory:
    """Not measured: the honest answer where no reliable peak counter exists."""

    method = NOT_MEASURED
    intrusive = False  # True: probing costs time inside the call, so keep it out of timed calls

    def start(self) -> None:
        pass

    def stop(self) -> int | None:
        return None


class CudaPeakMemory(PeakMemory):
    """How far the CUDA caching allocator's peak rose above what was allocated when the call
    started: the call's activations and temporaries, not the weights it found in place (an
    absolute peak hides an activation regression behind gigabytes of weights)."""

    method = MEMORY_CUDA

    def __init__(self, device: torch.device, cuda: Any = None) -> None:
        self.device = device
        self._cuda = cuda if cuda is not None else torch.cuda  # a fake in CPU-only tests
        self._before = 0

    def start(self) -> None:
        self._cuda.reset_peak_memory_stats(self.device)
        self._before = int(self._cuda.memory_allocated(self.device))

    def stop(self) -> int | None:
        return max(0, int(self._cuda.max_memory_allocated(self.device)) - self._before)


class RssPeakMemory(PeakMemory):
    """How far the process's resident memory rose above its level before the call (Linux).

    Writing "5" to /proc/self/clear_refs resets the high-water mark VmHWM. Free heap memory
    is first returned to the system with glibc's malloc_trim, or memory freed by an earlier
    call would be reused unseen and every call after the first would show a growth near zero.
    """

    method = MEMORY_RSS
    intrusive = True  # after malloc_trim the call page-faults its memory back in

    def __init__(self, malloc_trim: Callable[[int], Any]) -> None:
        self._trim = malloc_trim
        self._before = 0

    def start(self) -> None:
        self._trim(0)
        _CLEAR_REFS.write_text("5")
        self._before = _status_bytes("VmRSS")

    def stop(self) -> int | None:
        return max(0, _status_bytes("VmHWM") - self._before)


def _status_bytes(key: str) -> int:
    match = re.search(rf"^{key}:\s+(\d+) kB", _STATUS.read_text(), re.MULTILINE)
    if match is None:
        raise OSError(f"{key} missing from {_STATUS}")
    return int(match.group(1)) * 1024


def peak_memory(device: torch.device) -> PeakMemory:
    """The best honest peak-memory probe for `device`; one that says "not measured" if none."""
    if device.type == "cuda":
        return CudaPeakMemory(device)
    if device.type != "cpu":
        return PeakMemory()
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"))
        probe = RssPeakMemory(libc.malloc_trim)  # AttributeError off glibc (musl, macOS)
        probe.start()
        probe.stop()
    except (OSError, AttributeError, TypeError):
        return PeakMemory()
    return probe
