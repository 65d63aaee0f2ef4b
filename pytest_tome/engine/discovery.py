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


def attention_levels(sites: list[Site], args: TomeArgs) -> list[int]:
    """The downsamplings (from the model's input) at which `args` would merge a site, sorted."""
    return sorted({2**site.level for site in sites if site.family.enabled(args)})


def resolve_max_downsample(sites: list[Site], args: TomeArgs) -> int | None:
    """`args.max_downsample`, or for None the finest level that has attention (None if none)."""
    if args.max_downsample is not None:
        return args.max_downsample
    levels = attention_levels(sites, args)
    return levels[0] if levels else None


def select(sites: list[Site], args: TomeArgs) -> list[PatchedLayer]:
    """The sites within max_downsample (resolved) whose family has something to merge.

    Every family counts downsampling from the model's input, as tomesd does: 2**level.
    """
    limit = resolve_max_downsample(sites, args)
    return [
        PatchedLayer(site.name, site.module, site.family.backend, 2**site.level, site.family.name)
        for site in sites
        if site.family.enabled(args) and limit is not None and 2**site.level <= limit
    ]


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
        levels = attention_levels(sites, args)
        if levels:
            raise TomeNotApplicable(beyond_reach(name, levels, args))
        if all(site.family.name in ATTENTION_ONLY for site in sites):
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


def beyond_reach(name: str, levels: list[int], args: TomeArgs) -> str:
    """Why an explicit max_downsample patches nothing, and what to pass instead."""
    where = ", ".join(f"/{d}" for d in levels)
    first = "its first attention" if levels[0] > 1 else "its attention"
    tomesd = (
        " (tomesd's default; tomesd.apply_patch with it changes nothing here and says nothing)"
        if args.max_downsample == 1
        else ""
    )
    return (
        f"ToMe would patch nothing in {name}: all its attention layers are beyond "
        f"max_downsample={args.max_downsample}{tomesd}: {first} is at /{levels[0]} "
        f"(downsampled {levels[0]}x from the input; attention at {where}); pass "
        f"max_downsample={levels[0]} or leave max_downsample=None (the default: the finest "
        "level that has attention)"
    )
