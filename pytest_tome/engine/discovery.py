"""Finding the layers to patch: ask every family for its sites, keep those within reach,
and refuse (never patch silently nothing) when ratio > 0 would merge no token."""

from __future__ import annotations

from torch import nn

from pytest_tome.engine.args import TomeArgs, TomeNotApplicable
from pytest_tome.engine.families import FAMILIES
from pytest_tome.engine.layers import BACKEND_TOMESD, PatchedLayer, Site

# Families that merge around attention only: merge_crossattn and merge_mlp do not apply.
ATTENTION_ONLY = ("unet2d-attention", "sd3-joint-attention", "flux-attention")


def find_sites(model: nn.Module, backend: str = BACKEND_TOMESD) -> list[Site]:
    """Every site the families of `backend` can patch in `model`, a layer at most once."""
    seen: set[int] = set()
    sites = []
    for family in FAMILIES:
        if backend not in family.backends:
            continue
        for site in family.sites(model):
            if id(site.module) not in seen:
                seen.add(id(site.module))
                sites.append(site)
    return sites


def select(sites: list[Site], args: TomeArgs) -> list[PatchedLayer]:
    """The sites within max_downsample whose family has something to merge."""
    first: dict[str, int] = {}
    for site in sites:
        base = 0 if site.family.downsample_from_input else site.level
        first[site.family.name] = min(first.get(site.family.name, base), base)
    layers = []
    for site in sites:
        downsample = 2 ** (site.level - first[site.family.name])
        if site.family.enabled(args) and downsample <= args.max_downsample:
            layers.append(
                PatchedLayer(
                    site.name, site.module, site.family.backend, downsample, site.family.name
                )
            )
    return layers


def check_applicable(
    model: nn.Module, sites: list[Site], layers: list[PatchedLayer], args: TomeArgs
) -> None:
    """Raise TomeNotApplicable, naming the model class and why, if nothing would merge."""
    name = type(model).__name__
    if not sites:
        raise TomeNotApplicable(
            f"ToMe would patch nothing in {name}: it has no attention layers that any "
            "family of the engine knows (diffusers Attention or BasicTransformerBlock in a "
            "UNet's down_blocks, mid_block or up_blocks; DiT's or PixArt's BasicTransformerBlocks "
            "in transformer_blocks; SD3's joint or Flux's transformer blocks)"
        )
    if not layers:
        if any(site.family.enabled(args) for site in sites):
            why = f"all its attention layers are beyond max_downsample={args.max_downsample}"
        elif all(site.family.name in ATTENTION_ONLY for site in sites):
            why = (
                "merge_attn=False, and attention is all ToMe merges in it "
                "(merge_crossattn and merge_mlp do not apply)"
            )
        else:
            why = "merge_attn, merge_crossattn and merge_mlp are all False"
        raise TomeNotApplicable(f"ToMe would patch nothing in {name}: {why}")
    by_module = {id(site.module): site for site in sites}
    grids = []
    for layer in layers:
        site = by_module[id(layer.module)]
        grids.append(site.family.grid(model, site))
    if any(
        g is None or (g[0] >= args.sy and g[1] >= args.sx and int(g[0] * g[1] * args.ratio) > 0)
        for g in grids
    ):
        return
    most = max(h * w for h, w in grids)  # type: ignore[misc]
    size = getattr(model.config, "sample_size", None)
    raise TomeNotApplicable(
        f"ToMe would merge no token in {name}: at sample_size {size} its "
        f"patched layers have at most {most} tokens, and ratio {args.ratio:g} merges "
        f"int(tokens * ratio) = 0 of them with sx={args.sx}, sy={args.sy}"
        + (f" (use ratio >= {1 / most:.3g})" if most >= args.sx * args.sy else "")
    )
