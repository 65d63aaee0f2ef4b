"""pytest-tome: gate the speed and quality of Token Merging (ToMe) on diffusers pipelines.

The merge API is imported lazily, so loading the pytest plugin does not import torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = [
    "TomeNotApplicable",
    "TomePatch",
    "TomeWarning",
    "apply_tome",
    "max_ratio",
    "remove_tome",
    "tome_applied",
]

if TYPE_CHECKING:
    from pytest_tome.engine import (
        TomeNotApplicable,
        TomePatch,
        TomeWarning,
        apply_tome,
        max_ratio,
        remove_tome,
        tome_applied,
    )


def __getattr__(name: str) -> Any:
    if name in __all__:
        from pytest_tome import engine

        return getattr(engine, name)
    raise AttributeError(f"module 'pytest_tome' has no attribute {name!r}")
