"""Flux (`FluxTransformer2DModel`): image tokens merged in double- and single-stream attention.

Double-stream blocks call attention with the image tokens and the text beside them; single-
stream blocks with the concatenation [text, image]. Either way the processor merges only the
image tokens, calls the replaced processor and unmerges the image output; text rows pass
untouched. The rotary embeddings (cos, sin rows for [text, image]) must follow the tokens.

Position rule: a merged token keeps the position (the RoPE row) of the token that stays in
its place: an unmerged source its own, a destination its own, not the mean of the positions
averaged into it. The unmerge copies a destination's output to its merged sources, so each
output row is computed at the position of the token it was kept as; a mean of cos/sin rows
would not be a rotation at all. In code: the image RoPE rows are gathered with the same row
index as the kept tokens (`TokenMerge.keep`), the text rows left as they are.

Since RoPE rows are shared by the batch and each sample merges differently, a batch of more
than one sample is merged sample by sample, each as a batch of one (fixed destinations, as
tomesd for odd batches) with its own matching: a shared matching is keyed by the sample's
index, so image 1 never reuses image 0's. Flux-dev pipelines run a batch of one per prompt.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from pytest_tome.engine.families.joint import (
    ImageStreamFamily,
    ImageStreamProcessor,
    StreamShape,
    forward_arguments,
)
from pytest_tome.engine.layers import Site
from pytest_tome.engine.matching import TokenMerge


def merged_rope(
    rope: tuple[torch.Tensor, torch.Tensor], text: int, merging: TokenMerge
) -> tuple[torch.Tensor, torch.Tensor]:
    """The (cos, sin) rows for [text, merged image] of one sample: text rows as they are,
    image rows gathered with the rows the merge keeps (each merged token at its own place)."""
    if merging.is_identity:
        return rope
    if merging.batch != 1:
        raise ValueError(f"RoPE rows follow one sample's merge, got a batch of {merging.batch}")
    return tuple(
        torch.cat([t[:text], t[text:].index_select(0, merging.keep.to(t.device))]) for t in rope
    )  # type: ignore[return-value]


class FluxImageStreamProcessor(ImageStreamProcessor):
    """Merges the image tokens of a Flux attention call and gathers their RoPE rows."""

    def __call__(  # type: ignore[override]
        self,
        attn: Any,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        image_rotary_emb: tuple[torch.Tensor, torch.Tensor] | None = None,
        **kwargs: Any,
    ) -> Any:
        single = encoder_hidden_states is None  # single-stream: [text, image] in hidden_states
        text = self.shape.text if single else encoder_hidden_states.shape[1]
        image = hidden_states[:, text:] if single else hidden_states
        tokens, batch = image.shape[1], image.shape[0]
        why = self.why_unmerged(image, attention_mask)
        if why is not None:
            self.record(tokens, tokens, why)
            return self.original(
                attn,
                hidden_states,
                encoder_hidden_states,
                attention_mask,
                image_rotary_emb,
                **kwargs,
            )
        if batch == 1 or image_rotary_emb is None:
            return self._merged(
                attn, hidden_states, encoder_hidden_states, image_rotary_emb, kwargs
            )
        outs = [
            self._merged(
                attn,
                hidden_states[b : b + 1],
                None if single else encoder_hidden_states[b : b + 1],
                image_rotary_emb,
                kwargs,
                sample=b,
            )
            for b in range(batch)
        ]
        if single:
            return torch.cat(outs)
        return tuple(torch.cat(parts) for parts in zip(*outs, strict=True))

    def _merged(
        self,
        attn: Any,
        hidden_states: torch.Tensor,
        context: torch.Tensor | None,
        rope: tuple[torch.Tensor, torch.Tensor] | None,
        kwargs: dict[str, Any],
        sample: int | None = None,
    ) -> Any:
        """One call of the replaced processor on merged image tokens, its output unmerged;
        `sample`: which sample of the batch this batch of one is (its own shared matching)."""
        text = self.shape.text if context is None else context.shape[1]
        image = hidden_states[:, text:] if context is None else hidden_states
        merging = self.matching(image, sample)
        merged = merging.merge(image)
        if context is None:
            merged = torch.cat([hidden_states[:, :text], merged], dim=1)
        if rope is not None:
            rope = merged_rope(rope, text, merging)
        out = self.original(attn, merged, context, None, rope, **kwargs)
        self.record(image.shape[1], merging.tokens_out)
        if context is None:
            return torch.cat([out[:, :text], merging.unmerge(out[:, text:])], dim=1)
        return (merging.unmerge(out[0]), *out[1:])


class FluxAttention(ImageStreamFamily):
    """The attention of every double- and single-stream block of a FluxTransformer2DModel."""

    name = "flux-attention"
    processor = FluxImageStreamProcessor

    def sites(self, model: nn.Module) -> list[Site]:
        from diffusers import FluxTransformer2DModel

        if not isinstance(model, FluxTransformer2DModel):
            return []
        sites = []
        for group in ("transformer_blocks", "single_transformer_blocks"):
            for i, block in enumerate(getattr(model, group)):
                sites.append(Site(f"{group}.{i}.attn", block.attn, self, 0))
        return sites

    def supported(self) -> tuple[type, ...]:
        from diffusers.models.transformers.transformer_flux import FluxAttnProcessor

        return (FluxAttnProcessor,)

    def grid(self, model: nn.Module, site: Site) -> tuple[int, int] | None:
        return None  # Flux has no native size; the pipeline's height and width decide

    def read_shape(self, model: nn.Module, args: tuple, kwargs: dict, shape: StreamShape) -> None:
        given = forward_arguments(model, args, kwargs)
        ids, context = given.get("img_ids"), given.get("encoder_hidden_states")
        shape.text = 0 if context is None else context.shape[1]
        shape.height = shape.width = 0  # unknown layout: every call falls back, recorded
        if ids is None:
            return
        ids = ids[0] if ids.ndim == 3 else ids
        rows, cols = ids[:, 1], ids[:, 2]
        height = int(rows.max() - rows.min()) + 1
        width = int(cols.max() - cols.min()) + 1
        if height * width == ids.shape[0]:  # row-major, as FluxPipeline packs its latents
            shape.height, shape.width = height, width


FAMILY = FluxAttention()
