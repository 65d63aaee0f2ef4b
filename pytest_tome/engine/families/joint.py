"""SD3's joint attention (`JointTransformerBlock`): the image stream merged, the text untouched.

Each block's joint attention gets an `ImageStreamProcessor` through diffusers' processor API.
It merges the image tokens the attention receives (already normed and modulated by the block;
they are also the matching metric), calls the replaced processor on [merged image, every text
token] and unmerges its image output; the text output comes back as the processor made it.
So scaled dot-product attention sees N - floor(rN) image tokens plus all text tokens, and no
upstream forward is copied. SD3.5's dual-attention `attn2` (self-attention over the image
tokens only) is merged the same way. The grid (H/patch, W/patch) is read from the model's
input at every forward by a pre-hook. Matchings come from the patch's `Reducer` (shared across
blocks when `share_matching`). Removal restores the very processor objects (a processor user
code set since is left in place, with a TomeWarning). ToDo is refused: the original processor
takes one stream for queries, keys and values.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from pytest_tome.engine.args import METHOD_TODO, TomeNotApplicable
from pytest_tome.engine.families.base import Family
from pytest_tome.engine.families.unet2d import restore_processor
from pytest_tome.engine.layers import (
    BACKEND_OURS,
    REASON_GRID,
    REASON_MASK,
    REASON_RATIO,
    PatchedLayer,
    Site,
)
from pytest_tome.engine.matching import TokenMerge

if TYPE_CHECKING:
    from pytest_tome.engine.patch import TomePatch
    from pytest_tome.engine.reducer import Reducer


@dataclass
class StreamShape:
    """The image grid (in patches) and text length of the model's current forward."""

    height: int = 0
    width: int = 0
    text: int = 0


class ImageStreamProcessor:
    """Merges the image tokens of a joint attention call; the text tokens pass untouched."""

    def __init__(
        self,
        original: Any,
        shape: StreamShape,
        *,
        reducer: Reducer,
        layer: PatchedLayer | None = None,
    ) -> None:
        self.original = original
        self.shape = shape
        self.reducer = reducer
        self.layer = layer

    def why_unmerged(self, image: torch.Tensor, mask: torch.Tensor | None) -> str | None:
        """Why the (B, N, C) image tokens cannot be merged in this call; None: they can."""
        s, h, w = self.reducer.args, self.shape.height, self.shape.width
        if mask is not None:
            return REASON_MASK
        if h * w != image.shape[1] or h < s.sy or w < s.sx:
            return REASON_GRID
        if self.reducer.removed(h, w) == 0:
            return REASON_RATIO
        return None

    def matching(self, image: torch.Tensor, sample: int | None = None) -> TokenMerge:
        """How to merge the (B, N, C) image tokens (the patch's matching, shared if asked);
        `sample`: the index in the whole batch of a batch of one cut from it."""
        return self.reducer.plan(image, self.shape.height, self.shape.width, sample=sample)

    def record(self, tokens_in: int, tokens_out: int, reason: str | None = None) -> None:
        if self.layer is not None:
            self.layer.record(tokens_in, tokens_out, reason)

    def __call__(
        self,
        attn: Any,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        *args: Any,
        **kwargs: Any,
    ) -> Any:
        tokens = hidden_states.shape[1]
        why = self.why_unmerged(hidden_states, attention_mask)
        if why is not None:
            self.record(tokens, tokens, why)
            return self.original(
                attn, hidden_states, encoder_hidden_states, attention_mask, *args, **kwargs
            )
        merging = self.matching(hidden_states)
        out = self.original(
            attn,
            merging.merge(hidden_states),
            encoder_hidden_states,
            attention_mask,
            *args,
            **kwargs,
        )
        self.record(tokens, merging.tokens_out)
        if isinstance(out, tuple):  # (image, text): the text as the processor made it
            return (merging.unmerge(out[0]), *out[1:])
        return merging.unmerge(out)


def forward_arguments(model: nn.Module, args: tuple, kwargs: dict) -> dict[str, Any]:
    """The arguments of a call of `model.forward` by name, given positionally or not."""
    try:
        return inspect.signature(model.forward).bind_partial(*args, **kwargs).arguments
    except TypeError:  # not a call forward accepts: it will raise by itself
        return {}


class ImageStreamFamily(Family):
    """Base of the families that merge an image stream beside text: install and the hook."""

    backend = BACKEND_OURS
    processor = ImageStreamProcessor

    def supported(self) -> tuple[type, ...]:
        """The processor classes this family may wrap."""
        raise NotImplementedError

    def read_shape(self, model: nn.Module, args: tuple, kwargs: dict, shape: StreamShape) -> None:
        """Set `shape` from the arguments of the model's forward (a pre-hook)."""
        raise NotImplementedError

    def install(self, patch: TomePatch, layers: list[PatchedLayer]) -> None:
        if patch.args.method == METHOD_TODO:
            raise TomeNotApplicable(
                f"ToDo is not available for {type(patch.model).__name__}: its joint attention "
                "processors take one token stream for queries, keys and values; use method='tome'"
            )
        supported = self.supported()
        for layer in layers:
            original = layer.module.get_processor()
            # The original is called on merged tokens: only processors whose contract allows it.
            if not isinstance(original, supported):
                names = " and ".join(cls.__name__ for cls in supported)
                raise TomeNotApplicable(
                    f"{layer.name} of {type(patch.model).__name__} uses "
                    f"{type(original).__name__}; pytest-tome merges around {names} only; set "
                    "one of them on this layer (set_processor) before apply_tome"
                )
        shape = StreamShape()
        model = patch.model

        def hook(module: nn.Module, args: tuple, kwargs: dict) -> None:
            self.read_shape(module, args, kwargs, shape)

        patch.add_hook(model.register_forward_pre_hook(hook, with_kwargs=True))
        for layer in layers:
            original = layer.module.get_processor()
            processor = self.processor(original, shape, reducer=patch.reducer, layer=layer)
            layer.module.set_processor(processor)
            layer.processor = processor
            patch.on_remove(lambda layer=layer, p=original: restore_processor(layer, p))


class SD3JointAttention(ImageStreamFamily):
    """The joint attention (and SD3.5's image-only `attn2`) of SD3's JointTransformerBlocks."""

    name = "sd3-joint-attention"

    def sites(self, model: nn.Module) -> list[Site]:
        from diffusers import SD3Transformer2DModel
        from diffusers.models.attention import JointTransformerBlock

        if not isinstance(model, SD3Transformer2DModel):
            return []
        sites = []
        for i, block in enumerate(model.transformer_blocks):
            if isinstance(block, JointTransformerBlock):
                for attr in ("attn", "attn2"):
                    if getattr(block, attr, None) is not None:
                        sites.append(
                            Site(
                                f"transformer_blocks.{i}.{attr}", block.get_submodule(attr), self, 0
                            )
                        )
        return sites

    def supported(self) -> tuple[type, ...]:
        from diffusers.models.attention_processor import (
            FusedJointAttnProcessor2_0,
            JointAttnProcessor2_0,
        )

        return (JointAttnProcessor2_0, FusedJointAttnProcessor2_0)

    def grid(self, model: nn.Module, site: Site) -> tuple[int, int] | None:
        size, patch = model.config.sample_size, model.config.patch_size
        return size // patch, size // patch

    def read_shape(self, model: nn.Module, args: tuple, kwargs: dict, shape: StreamShape) -> None:
        given = forward_arguments(model, args, kwargs)
        latents, context = given.get("hidden_states"), given.get("encoder_hidden_states")
        patch = model.config.patch_size
        shape.height = shape.width = 0  # unknown: every call falls back, recorded
        if latents is not None and latents.ndim == 4:
            shape.height, shape.width = latents.shape[-2] // patch, latents.shape[-1] // patch
        shape.text = 0 if context is None else context.shape[1]


FAMILY = SD3JointAttention()
