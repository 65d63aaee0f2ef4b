"""Stable Diffusion's `BasicTransformerBlock`s inside a UNet, patched by `tomesd` itself.

`tomesd.apply_patch` is the reference ToMe for SD: using it as is keeps results equal to
tomesd's for the same arguments and seed. Forward pre-hooks count each block's tokens in
(before the merge) and out (what its self-attention sees).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch import nn

from pytest_tome.engine.args import TomeArgs
from pytest_tome.engine.families.base import Family, transformer_block_names, unet_blocks
from pytest_tome.engine.layers import BACKEND_TOMESD, PatchedLayer, Site

if TYPE_CHECKING:
    from pytest_tome.engine.patch import TomePatch


class TomesdBlocks(Family):
    name = "tomesd-blocks"
    backend = BACKEND_TOMESD
    backends = (BACKEND_TOMESD,)

    def sites(self, model: nn.Module) -> list[Site]:
        sites = []
        for prefix, block, level in unet_blocks(model):
            modules = dict(block.named_modules())
            for name in transformer_block_names(block):
                sites.append(Site(f"{prefix}.{name}", modules[name], self, level))
        return sites

    def enabled(self, args: TomeArgs) -> bool:
        return args.merge_attn or args.merge_crossattn or args.merge_mlp

    def install(self, patch: TomePatch, layers: list[PatchedLayer]) -> None:
        import tomesd

        a, unet = patch.args, patch.model
        tomesd.apply_patch(
            unet,
            ratio=a.ratio,
            max_downsample=a.max_downsample,
            sx=a.sx,
            sy=a.sy,
            use_rand=a.use_rand,
            merge_attn=a.merge_attn,
            merge_crossattn=a.merge_crossattn,
            merge_mlp=a.merge_mlp,
        )
        patch.on_remove(lambda: _remove_tomesd(unet))
        if a.seed is not None:
            args = unet._tome_info["args"]

            def seed_generator(module: nn.Module, pos: tuple, kw: dict) -> None:
                sample = pos[0] if pos else kw["sample"]
                args["generator"] = patch.rng.get(sample.device)

            patch.add_hook(unet.register_forward_pre_hook(seed_generator, with_kwargs=True))
        for layer in layers:
            counter = _TokenCounter(layer)
            patch.add_hook(
                layer.module.register_forward_pre_hook(counter.entered, with_kwargs=True)
            )
            patch.add_hook(
                layer.module.attn1.register_forward_pre_hook(counter.attended, with_kwargs=True)
            )

    @staticmethod
    def reseed(model: nn.Module) -> None:
        info = getattr(model, "_tome_info", None)
        if info is not None:
            info["args"]["generator"] = None  # remade on the next forward


class _TokenCounter:
    """Tokens a block got, and how many its self-attention then saw, recorded per call."""

    def __init__(self, layer: PatchedLayer) -> None:
        self.layer = layer
        self.tokens_in = 0

    def entered(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        self.tokens_in = _tokens(args, kwargs)

    def attended(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        self.layer.record(self.tokens_in, _tokens(args, kwargs))


def _tokens(args: tuple, kwargs: dict) -> int:
    hidden_states = args[0] if args else kwargs["hidden_states"]
    return hidden_states.shape[1]


def _remove_tomesd(unet: nn.Module) -> None:
    import tomesd

    tomesd.remove_patch(unet)
    for module in unet.modules():
        module.__dict__.pop("_tome_info", None)


FAMILY = TomesdBlocks()
