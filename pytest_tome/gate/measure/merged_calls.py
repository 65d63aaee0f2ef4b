"""Merged calls that prove they merged: ToMe applied around each call, checked after it.

A patch can stop merging at run time while `apply_tome` accepted it: an attention mask or a
context reaches a layer, a grid is too small, or user code replaces a processor. Each merged
call of the gate gets its own patch, applied and removed outside the timed part; after the
call every patched layer must have merged on at least one of its calls, or the gate fails
naming the layer, what it saw, and why it passed every token on.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

PREFIX = "merging stopped at run time: "


class MergingStopped(Exception):
    """Some patched layers merged no token in a merged call; `lines` says which and why."""

    def __init__(self, lines: list[str]) -> None:
        self.lines = tuple(PREFIX + line for line in lines)
        super().__init__("\n".join(self.lines))


class MergedCalls:
    """`with merged_calls():` ToMe on `pipe` for one call, then the run-time check."""

    def __init__(self, pipe: Any, ratio: float, **tome_kwargs: Any) -> None:
        self.pipe, self.ratio, self.kwargs = pipe, ratio, tome_kwargs
        self.calls = 0
        # (name, downsample, tokens in, tokens out) per patched layer after the last call.
        self.layers: tuple[tuple[str, int, int, int], ...] = ()

    @contextmanager
    def __call__(self) -> Iterator[Any]:
        from pytest_tome.engine import TomeWarning, apply_tome

        patch = apply_tome(self.pipe, self.ratio, **self.kwargs)
        idle: list[str] = []
        try:
            yield patch
            # Only a call that returned is checked: an error in it is the news, not its no-op.
            idle = patch.idle_layers() if self.ratio > 0 else []
            self.layers = tuple(
                (layer.name, layer.downsample, layer.tokens_in, layer.tokens_out)
                for layer in patch.layers
                if layer.tokens_in is not None
            )
        finally:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", TomeWarning)  # idle_layers names replacements
                patch.remove()
        self.calls += 1
        if idle:
            raise MergingStopped(idle)


def unchanged_images(base: Any, merged: Any, ratio: float) -> list[str]:
    """A failure line when merging at `ratio` > 0 left every pixel as it was, else none."""
    if ratio > 0 and np.array_equal(np.asarray(base), np.asarray(merged)):
        return [f"{PREFIX}the merged images are identical to the unmerged ones at ratio {ratio:g}"]
    return []
