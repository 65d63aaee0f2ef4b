"""What an architecture family tells the engine: where its layers are and how to patch them."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from torch import nn

from pytest_tome.engine.args import TomeArgs
from pytest_tome.engine.layers import BACKEND_OURS, BACKEND_TOMESD, PatchedLayer, Site

if TYPE_CHECKING:
    from pytest_tome.engine.patch import TomePatch


class Family:
    """One architecture family (UNet2DModel attention, tomesd's blocks, DiT, ...).

    Subclasses find their sites in a model and install the patch on the selected layers;
    everything they change is undone through `patch.on_remove`.
    """

    name = "family"
    backend = BACKEND_OURS  # who merges in its layers
    # The `apply_tome(backend=...)` choices that use this family; one family per layer each.
    backends: tuple[str, ...] = (BACKEND_OURS, BACKEND_TOMESD)

    def sites(self, model: nn.Module) -> list[Site]:
        raise NotImplementedError

    def enabled(self, args: TomeArgs) -> bool:
        """Whether these arguments ask this family to merge anything at all."""
        return args.merge_attn

    def grid(self, model: nn.Module, site: Site) -> tuple[int, int] | None:
        """The token grid (h, w) the site sees at the model's own sample size; None: unknown."""
        size = getattr(getattr(model, "config", None), "sample_size", None)
        if size is None:
            return None
        h, w = (size, size) if isinstance(size, int) else tuple(size)
        return -(-h // 2**site.level), -(-w // 2**site.level)

    def install(self, patch: TomePatch, layers: list[PatchedLayer]) -> None:
        raise NotImplementedError


def unet_blocks(unet: nn.Module) -> Iterator[tuple[str, nn.Module, int]]:
    """(name, block, level) for a UNet's down, mid and up blocks; level counts 2x downsamplings."""
    level = 0
    for i, block in enumerate(getattr(unet, "down_blocks", None) or ()):
        yield f"down_blocks.{i}", block, level
        level += getattr(block, "downsamplers", None) is not None
    mid = getattr(unet, "mid_block", None)
    if mid is not None:
        yield "mid_block", mid, level
    for i, block in enumerate(getattr(unet, "up_blocks", None) or ()):
        yield f"up_blocks.{i}", block, level
        level -= getattr(block, "upsamplers", None) is not None


def transformer_block_names(block: nn.Module) -> list[str]:
    """Names of the BasicTransformerBlocks inside `block` (matched by class name, as tomesd)."""
    return [
        name
        for name, module in block.named_modules()
        if any(cls.__name__ == "BasicTransformerBlock" for cls in type(module).__mro__)
    ]
