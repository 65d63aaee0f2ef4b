"""Apply Token Merging (ToMe) to a diffusers UNet, reversibly, and say what was patched.

Two backends share one API:

- "tomesd": `BasicTransformerBlock`s (Stable Diffusion's UNet2DConditionModel) are patched by
  `tomesd.apply_patch` itself, so results match tomesd's with the same arguments and seed.
- "pytest-tome": every other diffusers self-`Attention` in the UNet's down, mid and up blocks
  (UNet2DModel: DDPM, LDM), which tomesd does not touch, gets a `TomeAttnProcessor` through
  the attention-processor API; removal puts back the very processor objects it replaced.

`apply_tome` never patches silently nothing: with ratio > 0 it raises `TomeNotApplicable`
when no layer would merge a token, decided from the UNet's block structure and config.
"""

from __future__ import annotations

import inspect
import math
import numbers
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from pytest_tome.merge import TokenMerge, bipartite_soft_matching_2d

BACKEND_TOMESD = "tomesd"
BACKEND_OURS = "pytest-tome"
_PATCH_ATTR = "_pytest_tome_patch"  # where a model keeps its TomePatch, so remove_tome finds it

Matcher = Callable[..., TokenMerge]


class TomeNotApplicable(Exception):
    """ToMe with ratio > 0 would merge no token anywhere in the model; the message says why."""


def max_ratio(sx: int, sy: int) -> float:
    """The highest ratio strides sx, sy allow: every token but one per sy x sx cell merged."""
    _check_int("sx", sx, minimum=1)
    _check_int("sy", sy, minimum=1)
    return 1.0 - 1.0 / (sx * sy)


@dataclass(frozen=True)
class TomeSettings:
    """The arguments of `apply_tome`, validated (tomesd's meaning for each)."""

    ratio: float
    sx: int = 2
    sy: int = 2
    max_downsample: int = 1
    use_rand: bool = True
    merge_attn: bool = True
    merge_crossattn: bool = False
    merge_mlp: bool = False
    seed: int | None = None

    def __post_init__(self) -> None:
        _check_int("sx", self.sx, minimum=1)
        _check_int("sy", self.sy, minimum=1)
        _check_int("max_downsample", self.max_downsample, minimum=1)
        if self.seed is not None:
            _check_int("seed", self.seed, minimum=0)
        for flag in ("use_rand", "merge_attn", "merge_crossattn", "merge_mlp"):
            if not isinstance(getattr(self, flag), bool):
                raise TypeError(f"{flag} must be True or False, got {getattr(self, flag)!r}")
        ratio = self.ratio
        if isinstance(ratio, bool) or not isinstance(ratio, numbers.Real) or math.isnan(ratio):
            raise ValueError(f"ratio must be a number between 0 and 1, got {ratio!r}")
        limit = max_ratio(self.sx, self.sy)
        if ratio < 0 or ratio > limit:
            raise ValueError(
                f"ratio must be between 0 and {limit:g} for sx={self.sx}, sy={self.sy} "
                f"(1 - 1/(sx*sy): one token per cell is kept), got {ratio!r}"
            )
        object.__setattr__(self, "ratio", float(ratio))


@dataclass(eq=False)
class PatchedLayer:
    """One patched layer: what it is, who merges in it, and its tokens on the last forward."""

    name: str  # qualified name in the UNet
    module: nn.Module  # the Attention (pytest-tome) or BasicTransformerBlock (tomesd)
    backend: str  # BACKEND_OURS or BACKEND_TOMESD
    downsample: int  # tomesd: from the input; pytest-tome: from the largest attention layer
    tokens_in: int | None = None
    tokens_out: int | None = None


class DestinationRng:
    """The generator that draws random destinations, made on first use for the input's device.

    Seeded: `torch.Generator(device).manual_seed(seed)`, so merges do not depend on the global
    RNG. Unseeded: forked from the global RNG, as tomesd does.
    """

    def __init__(self, seed: int | None) -> None:
        self.seed = seed
        self._generator: torch.Generator | None = None

    def get(self, device: torch.device) -> torch.Generator:
        if self._generator is None or self._generator.device != device:
            if self.seed is None:
                from tomesd.utils import init_generator

                self._generator = init_generator(device, fallback=self._generator)
            else:
                self._generator = torch.Generator(device=device).manual_seed(self.seed)
        return self._generator

    def reset(self) -> None:
        """Start again from the seed (or a fresh fork of the global RNG) on the next forward."""
        self._generator = None


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
        settings: TomeSettings,
        *,
        rng: DestinationRng | None = None,
        layer: PatchedLayer | None = None,
        match: Matcher = bipartite_soft_matching_2d,
    ) -> None:
        self.original = original
        self.settings = settings
        self.rng = rng if rng is not None else DestinationRng(settings.seed)
        self.layer = layer
        self.match = match
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
        s = self.settings
        spatial = hidden_states.ndim == 4
        height, width = hidden_states.shape[-2:] if spatial else (0, 0)
        tokens = height * width if spatial else hidden_states.shape[1]
        r = int(tokens * s.ratio)
        if not spatial or encoder_hidden_states is not None or attention_mask is not None:
            r = 0
        if r == 0 or height < s.sy or width < s.sx:
            self._record(tokens, tokens)
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
        x = hidden_states.reshape(batch, channel, tokens).transpose(1, 2)
        if attn.group_norm is not None:
            x = attn.group_norm(x.transpose(1, 2)).transpose(1, 2)
        x = x.contiguous()  # merging gathers whole rows

        # Odd batches cannot pair prompted with unprompted images: fixed destinations (tomesd).
        use_rand = s.use_rand and batch % 2 == 0
        generator = self.rng.get(x.device) if use_rand else None
        merging = self.match(
            x, height, width, s.sx, s.sy, r, use_rand=use_rand, generator=generator
        )
        out = merging.unmerge(self._attend(attn, merging.merge(x)))
        self._record(tokens, merging.tokens_out)

        # A strided (B, C, H, W) view; adding the residual to it writes the layout out once.
        out = out.transpose(-1, -2).reshape(batch, channel, height, width)
        out = residual + out if attn.residual_connection else out.contiguous()
        return out / attn.rescale_output_factor

    def _attend(self, attn: Any, x: torch.Tensor) -> torch.Tensor:
        """Self-attention over (B, N', C) tokens, as the replaced processor computes it."""
        query, key, value = attn.to_q(x), attn.to_k(x), attn.to_v(x)
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

    def _record(self, tokens_in: int, tokens_out: int) -> None:
        if self.layer is not None:
            self.layer.tokens_in, self.layer.tokens_out = tokens_in, tokens_out


class TomePatch:
    """What `apply_tome` patched in one UNet; `remove()` undoes it exactly."""

    def __init__(
        self, model: nn.Module, settings: TomeSettings, layers: list[PatchedLayer]
    ) -> None:
        self.model = model
        self.settings = settings
        self.layers = tuple(layers)
        self.rng = DestinationRng(settings.seed)
        self._originals: dict[str, Any] = {}  # layer name -> the processor it had
        self._hooks: list[torch.utils.hooks.RemovableHandle] = []
        self._uses_tomesd = False
        self.removed = False

    @property
    def modules(self) -> list[nn.Module]:
        """The patched modules, for timing them with forward hooks."""
        return [layer.module for layer in self.layers]

    @property
    def names(self) -> list[str]:
        return [layer.name for layer in self.layers]

    @property
    def backends(self) -> tuple[str, ...]:
        return tuple(sorted({layer.backend for layer in self.layers}))

    def tokens(self) -> dict[str, tuple[int | None, int | None]]:
        """Tokens (in, out) of each patched layer on the last forward; None before any."""
        return {layer.name: (layer.tokens_in, layer.tokens_out) for layer in self.layers}

    def reseed(self) -> None:
        """Draw random destinations from the start of the seed again, e.g. before each image."""
        self.rng.reset()
        info = getattr(self.model, "_tome_info", None)
        if info is not None:
            info["args"]["generator"] = None  # remade on the next forward

    def describe(self) -> str:
        """One line per patched layer: name, backend, downsample and last tokens in -> out."""
        lines = [f"ToMe ratio={self.settings.ratio:g} on {type(self.model).__name__}:"]
        for layer in self.layers:
            tokens = (
                "not run yet"
                if layer.tokens_in is None
                else f"{layer.tokens_in} -> {layer.tokens_out} tokens"
            )
            lines.append(f"  {layer.name} [{layer.backend}, /{layer.downsample}]: {tokens}")
        return "\n".join(lines)

    def remove(self) -> None:
        """Put back the original processors and classes, drop every hook; safe to call twice."""
        if self.removed:
            return
        for handle in self._hooks:
            handle.remove()
        self._hooks.clear()
        for layer in self.layers:
            if layer.name in self._originals:
                layer.module.set_processor(self._originals.pop(layer.name))
        if self._uses_tomesd:
            import tomesd

            tomesd.remove_patch(self.model)
            for module in self.model.modules():
                module.__dict__.pop("_tome_info", None)
        self.model.__dict__.pop(_PATCH_ATTR, None)
        self.removed = True

    def __repr__(self) -> str:
        return (
            f"TomePatch(model={type(self.model).__name__}, ratio={self.settings.ratio:g}, "
            f"layers={len(self.layers)}, backends={self.backends}, removed={self.removed})"
        )


def apply_tome(
    pipe_or_model: Any,
    ratio: float,
    *,
    sx: int = 2,
    sy: int = 2,
    max_downsample: int = 1,
    use_rand: bool = True,
    merge_attn: bool = True,
    merge_crossattn: bool = False,
    merge_mlp: bool = False,
    seed: int | None = None,
) -> TomePatch:
    """Patch a pipeline's `.unet` (or a bare UNet) with ToMe; re-applying replaces the patch.

    Raises ValueError for bad arguments, TomeNotApplicable when ratio > 0 would merge nothing.
    """
    settings = TomeSettings(
        ratio, sx, sy, max_downsample, use_rand, merge_attn, merge_crossattn, merge_mlp, seed
    )
    unet = _unet_of(pipe_or_model)
    remove_tome(unet)
    sites = _find_sites(unet)
    layers = _select(sites, settings)
    if settings.ratio > 0:
        _check_applicable(unet, sites, layers, settings)
    patch = TomePatch(unet, settings, layers)
    try:
        _install(patch)
    except BaseException:
        patch.remove()
        raise
    return patch


def remove_tome(pipe_or_model: Any) -> bool:
    """Undo `apply_tome` on a pipeline or UNet; True if there was a patch to remove."""
    unet = _unet_of(pipe_or_model)
    patch = unet.__dict__.get(_PATCH_ATTR)
    if patch is None:
        return False
    patch.remove()
    return True


@contextmanager
def tome_applied(pipe_or_model: Any, ratio: float, **kwargs: Any) -> Iterator[TomePatch]:
    """`with tome_applied(pipe, 0.5) as patch:` ToMe inside the block, removed on exit, even on error."""
    patch = apply_tome(pipe_or_model, ratio, **kwargs)
    try:
        yield patch
    finally:
        patch.remove()


# --- finding the layers ------------------------------------------------------------------


@dataclass(frozen=True)
class _Site:
    """An attention layer ToMe could patch, with how many 2x downsamplings precede it."""

    name: str
    module: nn.Module
    backend: str
    level: int


def _unet_of(pipe_or_model: Any) -> nn.Module:
    unet = getattr(pipe_or_model, "unet", None)
    if isinstance(unet, nn.Module):
        return unet
    if isinstance(pipe_or_model, nn.Module):
        return pipe_or_model
    raise TypeError(
        "expected a diffusers pipeline with a `.unet` or a torch.nn.Module (a UNet), "
        f"got {type(pipe_or_model).__name__}"
    )


def _blocks(unet: nn.Module) -> Iterator[tuple[str, nn.Module, int]]:
    """(name, block, level) for the down, mid and up blocks; level counts 2x downsamplings."""
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


def _find_sites(unet: nn.Module) -> list[_Site]:
    from diffusers.models.attention_processor import Attention
    from tomesd.utils import isinstance_str

    sites = []
    for prefix, block, level in _blocks(unet):
        transformers = [
            n for n, m in block.named_modules() if isinstance_str(m, "BasicTransformerBlock")
        ]
        for name, module in block.named_modules():
            if name in transformers:
                sites.append(_Site(f"{prefix}.{name}", module, BACKEND_TOMESD, level))
            elif (
                isinstance(module, Attention)
                and not module.is_cross_attention
                and getattr(module, "added_kv_proj_dim", None) is None
                and not any(name.startswith(t + ".") for t in transformers)
            ):
                sites.append(_Site(f"{prefix}.{name}", module, BACKEND_OURS, level))
    return sites


def _select(sites: list[_Site], s: TomeSettings) -> list[PatchedLayer]:
    """The sites within max_downsample whose backend has something to merge."""
    ours = [site.level for site in sites if site.backend == BACKEND_OURS]
    base = {BACKEND_TOMESD: 0, BACKEND_OURS: min(ours, default=0)}
    enabled = {
        BACKEND_TOMESD: s.merge_attn or s.merge_crossattn or s.merge_mlp,
        BACKEND_OURS: s.merge_attn,
    }
    layers = []
    for site in sites:
        downsample = 2 ** (site.level - base[site.backend])
        if enabled[site.backend] and downsample <= s.max_downsample:
            layers.append(PatchedLayer(site.name, site.module, site.backend, downsample))
    return layers


def _grid(unet: nn.Module, level: int) -> tuple[int, int] | None:
    """Token grid (h, w) at `level` for the config's sample_size; None if it has none."""
    size = getattr(getattr(unet, "config", None), "sample_size", None)
    if size is None:
        return None
    h, w = (size, size) if isinstance(size, int) else tuple(size)
    return -(-h // 2**level), -(-w // 2**level)


def _check_applicable(
    unet: nn.Module, sites: list[_Site], layers: list[PatchedLayer], s: TomeSettings
) -> None:
    model = type(unet).__name__
    if not sites:
        raise TomeNotApplicable(
            f"ToMe would patch nothing in {model}: it has no attention layers (no diffusers "
            "Attention or BasicTransformerBlock) in down_blocks, mid_block or up_blocks"
        )
    if not layers:
        kinds = sorted({site.backend for site in sites})
        if kinds == [BACKEND_OURS] and not s.merge_attn:
            why = "merge_attn=False, and its Attention layers have only self-attention to merge"
        elif not (s.merge_attn or s.merge_crossattn or s.merge_mlp):
            why = "merge_attn, merge_crossattn and merge_mlp are all False"
        else:
            why = f"all its attention layers are beyond max_downsample={s.max_downsample}"
        raise TomeNotApplicable(f"ToMe would patch nothing in {model}: {why}")
    levels = {site.name: site.level for site in sites}
    grids = [_grid(unet, levels[layer.name]) for layer in layers]
    if any(
        g is None or (g[0] >= s.sy and g[1] >= s.sx and int(g[0] * g[1] * s.ratio) > 0)
        for g in grids
    ):
        return
    most = max(h * w for h, w in grids)  # type: ignore[misc]
    raise TomeNotApplicable(
        f"ToMe would merge no token in {model}: at sample_size {unet.config.sample_size} its "
        f"patched layers have at most {most} tokens, and ratio {s.ratio:g} merges "
        f"int(tokens * ratio) = 0 of them with sx={s.sx}, sy={s.sy}"
        + (f" (use ratio >= {1 / most:.3g})" if most >= s.sx * s.sy else "")
    )


# --- installing --------------------------------------------------------------------------


def _install(patch: TomePatch) -> None:
    ours = [layer for layer in patch.layers if layer.backend == BACKEND_OURS]
    theirs = [layer for layer in patch.layers if layer.backend == BACKEND_TOMESD]
    for layer in ours:
        original = layer.module.get_processor()
        patch._originals[layer.name] = original
        layer.module.set_processor(
            TomeAttnProcessor(original, patch.settings, rng=patch.rng, layer=layer)
        )
    if theirs:
        _install_tomesd(patch, theirs)
    patch.model.__dict__[_PATCH_ATTR] = patch


def _install_tomesd(patch: TomePatch, layers: list[PatchedLayer]) -> None:
    import tomesd

    s, unet = patch.settings, patch.model
    tomesd.apply_patch(
        unet,
        ratio=s.ratio,
        max_downsample=s.max_downsample,
        sx=s.sx,
        sy=s.sy,
        use_rand=s.use_rand,
        merge_attn=s.merge_attn,
        merge_crossattn=s.merge_crossattn,
        merge_mlp=s.merge_mlp,
    )
    patch._uses_tomesd = True
    if s.seed is not None:
        args = unet._tome_info["args"]

        def seed_generator(module: nn.Module, a: tuple, kw: dict) -> None:
            sample = a[0] if a else kw["sample"]
            args["generator"] = patch.rng.get(sample.device)

        patch._hooks.append(unet.register_forward_pre_hook(seed_generator, with_kwargs=True))
    for layer in layers:
        patch._hooks.append(
            layer.module.register_forward_pre_hook(_recorder(layer, "tokens_in"), with_kwargs=True)
        )
        patch._hooks.append(
            layer.module.attn1.register_forward_pre_hook(
                _recorder(layer, "tokens_out"), with_kwargs=True
            )
        )


def _recorder(layer: PatchedLayer, field: str) -> Callable[[nn.Module, tuple, dict], None]:
    """A forward pre-hook that stores the token count of the module's hidden_states."""

    def record(module: nn.Module, args: tuple, kwargs: dict) -> None:
        hidden_states = args[0] if args else kwargs["hidden_states"]
        setattr(layer, field, hidden_states.shape[1])

    return record


def _check_int(name: str, value: Any, *, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
