"""`BasicTransformerBlock`s merged by a processor of our own: SD's UNets, DiT and PixArt-α.

Two families share the mechanism:
- `UNetBlocks`, the `backend="pytest-tome"` choice for Stable Diffusion's UNets: the blocks
  `tomesd` patches, merged as tomesd merges them, so the outputs are tomesd's;
- `BackboneBlocks`: DiT and PixArt-α, whose blocks (`model.transformer_blocks`) run over
  patch tokens. tomesd counts their grid in pixels and so merges nothing there.

As in tomesd, a block's matching is computed from the block's input (before `norm1`; a
forward pre-hook keeps it) and used for each sub-layer the merge_* flags select. Self-attention
(`attn1`) gets a `BlockMergeProcessor` through diffusers' processor API: it merges the tokens
it receives, calls the very processor it replaced on them and unmerges the output, so no
upstream `forward` is copied. Cross-attention (`attn2`) stays unmerged unless
merge_crossattn: the text tokens are never merged. merge_mlp merges `ff` through hooks.

The token grid comes from the model's input at every forward (a pre-hook): (H / p, W / p)
for patch size p (1 in a UNet). A block with N tokens is d = ceil(sqrt(H * W // N)) times
downsampled (tomesd's rule) and sees a ceil(H / d) x ceil(W / d) grid.
"""

from __future__ import annotations

import math
import warnings
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from pytest_tome.engine.args import TomeArgs
from pytest_tome.engine.families.base import Family, transformer_block_names, unet_blocks
from pytest_tome.engine.layers import (
    BACKEND_OURS,
    REASON_CONTEXT,
    REASON_GRID,
    REASON_MASK,
    REASON_RATIO,
    REASON_REPLACED,
    PatchedLayer,
    Site,
    TomeWarning,
)
from pytest_tome.engine.matching import TokenMerge

if TYPE_CHECKING:
    from pytest_tome.engine.patch import TomePatch
    from pytest_tome.engine.reducer import Reducer


class InputGrid:
    """The token grid of the model's current input; `read` is the model's forward pre-hook."""

    def __init__(self, patch_size: int) -> None:
        self.patch_size = patch_size
        self.size: tuple[int, int] | None = None  # (h, w) in tokens at the first level

    def read(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        x = args[0] if args else kwargs.get("sample", kwargs.get("hidden_states"))
        if isinstance(x, torch.Tensor) and x.ndim == 4:
            self.size = (x.shape[-2] // self.patch_size, x.shape[-1] // self.patch_size)
        else:
            self.size = None

    def at(self, tokens: int) -> tuple[int, int, int] | None:
        """(h, w, downsample) of a layer with `tokens` tokens (tomesd's rule); None: no grid."""
        if self.size is None or tokens <= 0:
            return None
        height, width = self.size
        downsample = math.ceil(math.sqrt(height * width // tokens))
        if downsample < 1:
            return None
        h, w = math.ceil(height / downsample), math.ceil(width / downsample)
        return (h, w, downsample) if h * w == tokens else None


class BlockMerge:
    """One block's merge in the current call: the metric, its plan, and the record of it."""

    def __init__(
        self, layer: PatchedLayer, grid: InputGrid, reducer: Reducer, args: TomeArgs
    ) -> None:
        self.layer = layer
        self.grid = grid
        self.reducer = reducer
        self.args = args
        self.metric: torch.Tensor | None = None
        self.plan: TokenMerge | None = None
        self.reason: str | None = None  # why a sub-layer passed this call on unreduced
        self.tokens_out: int | None = None  # the fewest tokens a sub-layer saw in this call

    def _start(self, metric: torch.Tensor | None) -> None:
        self.metric, self.plan, self.reason, self.tokens_out = metric, None, None, None

    def entered(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        """Block pre-hook: its input hidden states are the metric, as in tomesd."""
        self._start(args[0] if args else kwargs.get("hidden_states"))

    def left(self, module: nn.Module, args: tuple, kwargs: dict, output: Any) -> None:
        """Block hook: record the call once (tokens in, and the fewest any sub-layer saw)."""
        tokens = self.metric.shape[1] if isinstance(self.metric, torch.Tensor) else 0
        if self.tokens_out is not None and self.tokens_out < tokens:
            self.layer.record(tokens, self.tokens_out)
        else:
            self.layer.record(tokens, tokens, self.reason or REASON_REPLACED)
        self._start(None)

    def grid_of(self, x: torch.Tensor) -> tuple[int, int] | None:
        """The (h, w) grid of (B, N, C) `x` if this call can reduce it; else None, with why."""
        found = self.grid.at(x.shape[1]) if x.ndim == 3 else None
        if found is None or found[2] > self.args.max_downsample:
            self.reason = self.reason or REASON_GRID
            return None
        h, w, _ = found
        if self.reducer.removed(h, w) == 0:
            cell_h, cell_w = self.reducer.cell
            self.reason = self.reason or (REASON_GRID if h < cell_h or w < cell_w else REASON_RATIO)
            return None
        return h, w

    def merging(self, x: torch.Tensor) -> TokenMerge | None:
        """ToMe's plan for (B, N, C) `x`, made once per call from the block's input."""
        if self.plan is None:
            shape = self.grid_of(x)
            if shape is None:
                return None
            metric = self.metric
            if not isinstance(metric, torch.Tensor) or metric.shape[:2] != x.shape[:2]:
                metric = x  # called outside its block's forward: match what it was given
            self.plan = self.reducer.plan(metric, *shape)
        return self.plan if self.plan.tokens_in == x.shape[1] else None

    def saw(self, tokens: int) -> None:
        self.tokens_out = tokens if self.tokens_out is None else min(self.tokens_out, tokens)


class BlockMergeProcessor:
    """Wraps a block's attention processor: merge the tokens, attend, unmerge the output.

    Self-attention (`attn1`) merges, or with ToDo attends over downsampled keys and values;
    cross-attention (`attn2`, only with merge_crossattn) merges its queries while the text
    context passes untouched. A call it cannot reduce (a mask, a context on self-attention,
    no grid) goes to the replaced processor unchanged, and the block records why.
    """

    def __init__(self, original: Any, block: BlockMerge, *, self_attention: bool) -> None:
        self.original = original
        self.block = block
        self.self_attention = self_attention

    def __call__(
        self,
        attn: Any,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
    ) -> torch.Tensor:
        extra = {} if temb is None else {"temb": temb}
        block = self.block
        if self.self_attention and (
            attention_mask is not None or encoder_hidden_states is not None
        ):
            block.reason = block.reason or (
                REASON_MASK if attention_mask is not None else REASON_CONTEXT
            )
        elif self.self_attention and block.reducer.todo:
            shape = block.grid_of(hidden_states)
            if shape is not None:
                keys_values = block.reducer.keys_values(hidden_states, *shape)
                block.saw(keys_values.shape[1])
                return self.original(
                    attn, hidden_states, encoder_hidden_states=keys_values, **extra
                )
        elif not block.reducer.todo:
            merging = block.merging(hidden_states)
            if merging is not None:
                block.saw(merging.tokens_out)
                merged = merging.merge(hidden_states)
                out = self.original(
                    attn,
                    merged,
                    encoder_hidden_states=encoder_hidden_states,
                    attention_mask=attention_mask,
                    **extra,
                )
                return merging.unmerge(out)
        return self.original(
            attn,
            hidden_states,
            encoder_hidden_states=encoder_hidden_states,
            attention_mask=attention_mask,
            **extra,
        )


class _FeedForwardMerge:
    """Hooks that merge a block's `ff` input and unmerge its output (merge_mlp, ToMe only)."""

    def __init__(self, block: BlockMerge) -> None:
        self.block = block
        self.active: TokenMerge | None = None

    def entered(self, module: nn.Module, args: tuple) -> tuple | None:
        self.active = None if self.block.reducer.todo else self.block.merging(args[0])
        if self.active is None:
            return None
        self.block.saw(self.active.tokens_out)
        return (self.active.merge(args[0]), *args[1:])

    def left(self, module: nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor | None:
        merging, self.active = self.active, None
        return None if merging is None else merging.unmerge(output)


class _MergedBlocks(Family):
    """What both families share: one `BlockMerge` per block, processors and hooks on it."""

    backend = BACKEND_OURS

    def enabled(self, args: TomeArgs) -> bool:
        return args.merge_attn or args.merge_crossattn or args.merge_mlp

    def patch_size(self, model: nn.Module) -> int:
        return 1

    def install(self, patch: TomePatch, layers: list[PatchedLayer]) -> None:
        args, model = patch.args, patch.model
        grid = InputGrid(self.patch_size(model))
        patch.add_hook(model.register_forward_pre_hook(grid.read, with_kwargs=True))
        for layer in layers:
            module = layer.module
            block = BlockMerge(layer, grid, patch.reducer, args)
            patch.add_hook(module.register_forward_pre_hook(block.entered, with_kwargs=True))
            patch.add_hook(module.register_forward_hook(block.left, with_kwargs=True))
            chosen = [(args.merge_attn, "attn1", True), (args.merge_crossattn, "attn2", False)]
            for flag, name, self_attention in chosen:
                attn = getattr(module, name, None)
                if flag and attn is not None:
                    original = attn.get_processor()
                    ours = BlockMergeProcessor(original, block, self_attention=self_attention)
                    attn.set_processor(ours)
                    where = f"{layer.name}.{name}"
                    patch.on_remove(
                        lambda a=attn, o=ours, p=original, w=where: _restore(a, o, p, w)
                    )
            if args.merge_mlp and getattr(module, "ff", None) is not None:
                ff = _FeedForwardMerge(block)
                patch.add_hook(module.ff.register_forward_pre_hook(ff.entered))
                patch.add_hook(module.ff.register_forward_hook(ff.left))


def _restore(attn: Any, ours: BlockMergeProcessor, original: Any, where: str) -> None:
    """Put `original` back, unless user code replaced our processor since: then say so."""
    if attn.processor is ours:
        attn.set_processor(original)
    else:
        warnings.warn(
            f"remove_tome: {where} holds {type(attn.processor).__name__}, set after "
            "apply_tome; left in place (its original processor is not restored)",
            TomeWarning,
            stacklevel=4,
        )


class UNetBlocks(_MergedBlocks):
    """SD's BasicTransformerBlocks in a UNet (the `backend="pytest-tome"` choice)."""

    name = "unet-blocks"
    backends = (BACKEND_OURS,)

    def sites(self, model: nn.Module) -> list[Site]:
        sites = []
        for prefix, block, level in unet_blocks(model):
            modules = dict(block.named_modules())
            for name in transformer_block_names(block):
                sites.append(Site(f"{prefix}.{name}", modules[name], self, level))
        return sites


class BackboneBlocks(_MergedBlocks):
    """DiT's and PixArt-α's BasicTransformerBlocks, over patch tokens (one level)."""

    name = "transformer-backbone"

    def sites(self, model: nn.Module) -> list[Site]:
        blocks = getattr(model, "transformer_blocks", None)
        config = getattr(model, "config", None)
        if not isinstance(blocks, nn.ModuleList) or getattr(config, "patch_size", None) is None:
            return []
        return [
            Site(f"transformer_blocks.{i}", block, self, 0)
            for i, block in enumerate(blocks)
            if any(cls.__name__ == "BasicTransformerBlock" for cls in type(block).__mro__)
        ]

    def patch_size(self, model: nn.Module) -> int:
        return int(model.config.patch_size)

    def grid(self, model: nn.Module, site: Site) -> tuple[int, int] | None:
        """The patch grid at the model's sample size: sample_size // patch_size."""
        size = getattr(model.config, "sample_size", None)
        if size is None:
            return None
        h, w = (size, size) if isinstance(size, int) else tuple(size)
        patch = self.patch_size(model)
        return h // patch, w // patch


UNET_FAMILY = UNetBlocks()
BACKBONE_FAMILY = BackboneBlocks()
