"""What the engine patches: candidate sites, patched layers, and what each layer did at run time.

A layer that is patched but passes every token on (an attention mask, a context, a grid too
small, its processor replaced by user code) is the run-time form of a silent no-op; each such
call is counted by reason, so callers can say which layer stopped merging and why.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import nn

BACKEND_TOMESD = "tomesd"
BACKEND_OURS = "pytest-tome"

# Why a patched layer passed a call's tokens on unmerged.
REASON_MASK = "mask"
REASON_CONTEXT = "context"
REASON_3D = "3-D input"
REASON_GRID = "grid too small"
REASON_RATIO = "ratio merges no token"
REASON_REPLACED = "processor replaced"


@dataclass(frozen=True)
class Site:
    """A layer ToMe could patch: where it is, which family patches it, and its depth."""

    name: str  # qualified name in the model
    module: nn.Module
    family: Any  # the engine.families.Family that found it
    level: int  # 2x downsamplings before it (0 for transformer backbones)


@dataclass(eq=False)
class PatchedLayer:
    """One patched layer: what it is, who merges in it, and its tokens at run time."""

    name: str
    module: nn.Module
    backend: str  # BACKEND_OURS or BACKEND_TOMESD
    downsample: int  # 2**level: times downsampled from the model's input (both backends)
    family: str = ""
    tokens_in: int | None = None  # of the last call
    tokens_out: int | None = None
    calls: int = 0
    merged_calls: int = 0  # calls that passed fewer tokens on than they got
    fallbacks: Counter[str] = field(default_factory=Counter)  # reason -> unmerged calls
    # The attention processor installed in `module`, for families that merge through one;
    # user code that later calls `set_attn_processor` replaces it and merging stops.
    processor: Any = None

    def record(self, tokens_in: int, tokens_out: int, reason: str | None = None) -> None:
        """Count one call: merged when tokens_out < tokens_in, else unmerged for `reason`."""
        self.tokens_in, self.tokens_out = tokens_in, tokens_out
        self.calls += 1
        if tokens_out < tokens_in:
            self.merged_calls += 1
        else:
            self.fallbacks[reason or REASON_RATIO] += 1

    def reset_counts(self) -> None:
        self.calls = self.merged_calls = 0
        self.fallbacks.clear()

    @property
    def replaced(self) -> bool:
        """Whether the processor installed here was since replaced by someone else's."""
        return self.processor is not None and _processor_of(self.module) is not self.processor

    def idle(self) -> str | None:
        """Why this layer merged no token since the last reset; None if it merged on a call.

        `merging stopped at run time`-style text: what it saw, what it passed on, and why.
        """
        if self.merged_calls and not self.replaced:
            return None
        if self.replaced:
            now = type(_processor_of(self.module)).__name__
            return f"{self.name} passed every token on ({REASON_REPLACED}: now {now})"
        if not self.calls:
            return f"{self.name} was never called"
        reasons = ", ".join(
            f"{why}: {n} of {self.calls} calls" for why, n in self.fallbacks.items()
        )
        return (
            f"{self.name} saw {self.tokens_in} tokens and passed {self.tokens_out} on ({reasons})"
        )


class TomeWarning(UserWarning):
    """Something a user changed stops or outlives ToMe, e.g. a processor replaced after apply."""


def _processor_of(module: Any) -> Any:
    return getattr(module, "processor", None)
