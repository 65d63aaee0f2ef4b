"""One module per architecture family; the engine asks each, in order, for its sites.

A new family is a new module with a `Family` subclass and an entry in `FAMILIES`.
"""

from __future__ import annotations

from pytest_tome.engine.families import flux, joint, tomesd_blocks, transformer_blocks, unet2d
from pytest_tome.engine.families.base import Family

FAMILIES: tuple[Family, ...] = (
    tomesd_blocks.FAMILY,  # SD 1.5's and SDXL's BasicTransformerBlocks, backend="tomesd"
    transformer_blocks.UNET_FAMILY,  # the same blocks, backend="pytest-tome"
    unet2d.FAMILY,
    transformer_blocks.BACKBONE_FAMILY,  # DiT, PixArt-α
    joint.FAMILY,
    flux.FAMILY,
)

__all__ = ["FAMILIES", "Family"]
