"""UNet2DModel self-attention (DDPM, LDM): merged by an attention processor of our own.

`tomesd` patches only `BasicTransformerBlock`, so on UNet2DModel it changes nothing. Here each
self-`Attention` in the UNet's down, mid and up blocks gets a `TomeAttnProcessor` through
diffusers' attention-processor API; removal puts back the very processor objects it replaced.
"""

from __future__ import annotations

import inspect
import warnings
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

from pytest_tome.engine.args import TomeArgs, TomeNotApplicable
from pytest_tome.engine.families.base import Family, transformer_block_names, unet_blocks
from pytest_tome.engine.layers import (
    BACKEND_OURS,
    REASON_3D,
    REASON_CONTEXT,
    REASON_GRID,
    REASON_MASK,
    REASON_RATIO,
    PatchedLayer,
    Site,
    TomeWarning,
)
from pytest_tome.engine.matching import DestinationRng, bipartite_soft_matching_2d
from pytest_tome.engine.reducer import Matcher, Reducer

if TYPE_CHECKING:
    from pytest_tome.engine.patch import TomePatch


class TomeAttnProcessor:
    """A diffusers attention processor that merges spatial tokens around self-attention.

    Mirrors `AttnProcessor2_0` (or `AttnProcessor`, when that is what it replaces), except
    that the tokens are merged after the group norm and before q/k/v, and unmerged before
    the output reshape and the residual. Calls it cannot merge (3-D input, masks, context,
    r = 0) go to the original processor unchanged.
    """

    def __init__(
        self,
        original: Any,
        settings: TomeArgs,
        *,
        rng: DestinationRng | None = None,
        layer: PatchedLayer | None = None,
        match: Matcher = bipartite_soft_matching_2d,
        reducer: Reducer | None = None,
    ) -> None:
        self.original = original
        self.settings = settings
        self.reducer = reducer if reducer is not None else Reducer(settings, rng, match)
        self.layer = layer
        from diffusers.models.attention_processor import AttnProcessor

        self._classic = isinstance(original, AttnProcessor)  # honours upcast_attention/softmax
        params = inspect.signature(original.__call__).parameters.values()
        # Pass temb on only where the original takes it, as Attention.forward would.
        self._temb_ok = any(p.name == "temb" or p.kind is p.VAR_KEYWORD for p in params)

    def __call__(
        self,
        attn: Any,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
    ) -> torch.Tensor:
        spatial = hidden_states.ndim == 4
        height, width = hidden_states.shape[-2:] if spatial else (0, 0)
        tokens = height * width if spatial else hidden_states.shape[1]
        removed = self.reducer.removed(height, width) if spatial else 0
        if removed == 0 or encoder_hidden_states is not None or attention_mask is not None:
            self._record(
                tokens,
                tokens,
                self._why_unmerged(hidden_states, encoder_hidden_states, attention_mask),
            )
            extra = {"temb": temb} if temb is not None and self._temb_ok else {}
            return self.original(
                attn,
                hidden_states,
                encoder_hidden_states=encoder_hidden_states,
                attention_mask=attention_mask,
                **extra,
            )

        residual = hidden_states
        if attn.spatial_norm is not None:
            hidden_states = attn.spatial_norm(hidden_states, temb)
        batch, channel = hidden_states.shape[:2]
        # Normed as a 4-D map, so a channels-last input stays channels-last (no copy).
        normed = attn.group_norm(hidden_states) if attn.group_norm is not None else hidden_states
        x = normed.permute(0, 2, 3, 1).reshape(batch, tokens, channel)  # a view in both layouts

        if self.reducer.todo:
            context = self.reducer.keys_values(x, height, width)
            out = self._attend(attn, x, context)
            self._record(tokens, context.shape[1])
        else:
            if x.is_contiguous():  # channels-last input: the tokens are rows already
                merging = self.reducer.plan(x, height, width)
                merged = merging.merge(x)
            else:  # channels-first: match and merge along N where the tokens lie
                channels_first = normed.reshape(batch, channel, tokens)
                merging = self.reducer.plan(channels_first, height, width, channels_first=True)
                merged = merging.merge_channels_first(channels_first).transpose(1, 2)
            out = merging.unmerge(self._attend(attn, merged))
            self._record(tokens, merging.tokens_out)

        # A (B, C, H, W) view of the rows; adding the residual to it writes the layout out once.
        out = out.view(batch, height, width, channel).permute(0, 3, 1, 2)
        out = residual + out if attn.residual_connection else out.contiguous()
        if attn.rescale_output_factor != 1:  # x / 1.0 is x: skip a pass over the output
            out = out / attn.rescale_output_factor
        return out

    def _attend(self, attn: Any, x: torch.Tensor, kv: torch.Tensor | None = None) -> torch.Tensor:
        """Self-attention of (B, N', C) tokens over themselves or over `kv` (ToDo's keys and
        values), as the replaced processor computes it."""
        kv = x if kv is None else kv
        query, key, value = attn.to_q(x), attn.to_k(kv), attn.to_v(kv)
        if self._classic:
            query, key, value = (attn.head_to_batch_dim(t) for t in (query, key, value))
            probs = attn.get_attention_scores(query, key, None)
            out = attn.batch_to_head_dim(torch.bmm(probs, value))
        else:
            batch, head_dim = x.shape[0], key.shape[-1] // attn.heads
            query, key, value = (
                t.view(batch, -1, attn.heads, head_dim).transpose(1, 2) for t in (query, key, value)
            )
            if attn.norm_q is not None:
                query = attn.norm_q(query)
            if attn.norm_k is not None:
                key = attn.norm_k(key)
            out = F.scaled_dot_product_attention(query, key, value, dropout_p=0.0, is_causal=False)
            out = out.transpose(1, 2).reshape(batch, -1, attn.heads * head_dim).to(query.dtype)
        return attn.to_out[1](attn.to_out[0](out))

    def _why_unmerged(
        self, hidden_states: torch.Tensor, context: torch.Tensor | None, mask: torch.Tensor | None
    ) -> str:
        if hidden_states.ndim != 4:
            return REASON_3D
        if mask is not None:
            return REASON_MASK
        if context is not None:
            return REASON_CONTEXT
        height, width = hidden_states.shape[-2:]
        cell_h, cell_w = self.reducer.cell
        if height < cell_h or width < cell_w:
            return REASON_GRID
        return REASON_RATIO

    def _record(self, tokens_in: int, tokens_out: int, reason: str | None = None) -> None:
        if self.layer is not None:
            self.layer.record(tokens_in, tokens_out, reason)


class UNet2DAttention(Family):
    """Every self-attention `Attention` of a UNet outside BasicTransformerBlocks."""

    name = "unet2d-attention"
    backend = BACKEND_OURS

    def sites(self, model: nn.Module) -> list[Site]:
        from diffusers.models.attention_processor import Attention

        sites = []
        for prefix, block, level in unet_blocks(model):
            inside = transformer_block_names(block)
            for name, module in block.named_modules():
                if (
                    isinstance(module, Attention)
                    and not module.is_cross_attention
                    and getattr(module, "added_kv_proj_dim", None) is None
                    and not any(name.startswith(t + ".") for t in inside)
                ):
                    sites.append(Site(f"{prefix}.{name}", module, self, level))
        return sites

    def install(self, patch: TomePatch, layers: list[PatchedLayer]) -> None:
        from diffusers.models.attention_processor import AttnProcessor, AttnProcessor2_0

        originals = [layer.module.get_processor() for layer in layers]
        for layer, original in zip(layers, originals):
            # Merging re-implements the attention of these two only; any other processor
            # (sliced, xformers, a user's own) would be silently swapped for plain SDPA.
            if type(original) not in (AttnProcessor, AttnProcessor2_0):
                raise TomeNotApplicable(
                    f"{layer.name} uses {type(original).__name__}; pytest-tome merges around "
                    "AttnProcessor and AttnProcessor2_0 only; set one of them on this layer "
                    "(Attention.set_processor) before apply_tome"
                )
        for layer, original in zip(layers, originals):
            processor = TomeAttnProcessor(original, patch.args, layer=layer, reducer=patch.reducer)
            layer.module.set_processor(processor)
            layer.processor = processor
            patch.on_remove(lambda layer=layer, p=original: restore_processor(layer, p))


def restore_processor(layer: PatchedLayer, original: Any) -> None:
    """Put `original` back, unless user code replaced our processor since: then say so."""
    if layer.replaced:
        warnings.warn(
            f"remove_tome: {layer.name} holds {type(layer.module.processor).__name__}, set "
            "after apply_tome; left in place (its original processor is not restored)",
            TomeWarning,
            stacklevel=4,
        )
    else:
        layer.module.set_processor(original)
    layer.processor = None


FAMILY = UNet2DAttention()
