"""One module per architecture family; the engine asks each, in order, for its sites.

A new family is a new module with a `Family` subclass and an entry in `FAMILIES`.
"""

from __future__ import annotations

from pytest_tome.engine.families import flux, joint, tomesd_blocks, unet2d
from pytest_tome.engine.families.base import Family

FAMILIES: tuple[Family, ...] = (tomesd_blocks.FAMILY, unet2d.FAMILY, joint.FAMILY, flux.FAMILY)

__all__ = ["FAMILIES", "Family"]
