"""The token reduction methods and the ratios each can realise (no torch: options use it).

- "tome": Token Merging (bipartite soft matching); ratio = share of tokens merged, any value
  up to 1 - 1/(sx*sy) (0.75 for 2x2 cells).
- "todo": Token Downsampling (Smith et al. 2024, arXiv:2402.13573); ratio = share of the
  key/value tokens removed by a k x k nearest downsampling, so only 0 and 1 - 1/k^2 for k in
  `TODO_FACTORS`: 0.75 (2x2), 0.889 (3x3), 0.9375 (4x4).
"""

from __future__ import annotations

import math
import numbers
from typing import Any

METHOD_TOME = "tome"  # bipartite soft matching: merge tokens, attend, unmerge
METHOD_TODO = "todo"  # token downsampling: every query kept, keys/values downsampled
METHODS = (METHOD_TOME, METHOD_TODO)
TODO_FACTORS = (2, 3, 4)  # k x k downsampling of the key/value grid
_TOLERANCE = 1e-3  # so 0.889 names 8/9


def todo_ratio(factor: int) -> float:
    """The share of key/value tokens a factor x factor downsampling removes."""
    return 1.0 - 1.0 / factor**2


def valid_todo_ratios() -> str:
    """The ratios ToDo accepts, for error messages: '0, 0.75 (2x2), 0.889 (3x3), ...'."""
    return ", ".join(["0"] + [f"{todo_ratio(k):.4g} ({k}x{k})" for k in TODO_FACTORS])


def todo_factor(ratio: Any) -> int:
    """The downsampling factor k that realises `ratio` (1 for ratio 0); ValueError otherwise."""
    if not (
        isinstance(ratio, numbers.Real)
        and not isinstance(ratio, bool)
        and not math.isnan(ratio)
        and ratio >= 0
    ):
        raise ValueError(
            f"ToDo ratio must be one of {valid_todo_ratios()} (the share of key/value tokens "
            f"removed), got {ratio!r}"
        )
    if ratio == 0:
        return 1
    for k in TODO_FACTORS:
        if abs(ratio - todo_ratio(k)) <= _TOLERANCE:
            return k
    raise ValueError(
        f"ToDo ratio must be one of {valid_todo_ratios()} (the share of key/value tokens "
        f"removed by a k x k nearest downsampling), got {ratio!r}"
    )


def realises(method: str, ratio: float) -> bool:
    """Whether `method` can run at `ratio` (ToMe: any ratio; its limit is checked later)."""
    if method != METHOD_TODO:
        return True
    try:
        todo_factor(ratio)
    except ValueError:
        return False
    return True
