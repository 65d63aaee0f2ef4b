"""Apply Token Merging (ToMe) to a diffusers model, reversibly, and say what was patched.

The families in `engine.families` find the layers; this module checks the arguments,
refuses a patch that would merge nothing (`TomeNotApplicable`), installs every family's part,
and keeps what is needed to undo it exactly: `remove()` runs the undo steps in reverse.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from pytest_tome.engine.args import TomeArgs
from pytest_tome.engine.discovery import (
    check_applicable,
    find_sites,
    resolve_max_downsample,
    select,
)
from pytest_tome.engine.families import FAMILIES
from pytest_tome.engine.layers import BACKEND_OURS, PatchedLayer
from pytest_tome.engine.matching import DestinationRng
from pytest_tome.engine.reducer import Reducer

_PATCH_ATTR = "_pytest_tome_patch"  # where a model keeps its TomePatch, so remove_tome finds it


class TomePatch:
    """What `apply_tome` patched in one model; `remove()` undoes it exactly."""

    def __init__(self, model: nn.Module, args: TomeArgs, layers: list[PatchedLayer]) -> None:
        self.model = model
        self.args = args
        self.layers = tuple(layers)
        self.rng = DestinationRng(args.seed)
        self.reducer = Reducer(args, self.rng)  # what every processor of ours reduces with
        self._undo: list[Callable[[], None]] = []
        self.removed = False

    @property
    def settings(self) -> TomeArgs:
        """The validated arguments (an alias of `args`)."""
        return self.args

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

    def idle_layers(self) -> list[str]:
        """One line per patched layer that merged no token on any call since apply (or the
        last `reset_counts`): what it saw and passed on, and why (mask, context, 3-D input,
        grid too small, ratio, processor replaced). Empty when every layer merged."""
        return [why for why in (layer.idle() for layer in self.layers) if why is not None]

    def reset_counts(self) -> None:
        for layer in self.layers:
            layer.reset_counts()

    def on_remove(self, undo: Callable[[], None]) -> None:
        """Register one step that `remove()` runs (in reverse order of registration)."""
        self._undo.append(undo)

    def add_hook(self, handle: torch.utils.hooks.RemovableHandle) -> None:
        self.on_remove(handle.remove)

    def reseed(self) -> None:
        """Draw random destinations from the start of the seed again, e.g. before each image."""
        self.rng.reset()
        info = getattr(self.model, "_tome_info", None)
        if info is not None:
            info["args"]["generator"] = None  # tomesd remakes it on the next forward

    def describe(self) -> str:
        """One line per patched layer: name, backend, downsample and last tokens in -> out."""
        lines = [f"ToMe ratio={self.args.ratio:g} on {type(self.model).__name__}:"]
        for layer in self.layers:
            tokens = (
                "not run yet"
                if layer.tokens_in is None
                else f"{layer.tokens_in} -> {layer.tokens_out} tokens"
            )
            lines.append(f"  {layer.name} [{layer.backend}, /{layer.downsample}]: {tokens}")
        return "\n".join(lines)

    def remove(self) -> None:
        """Undo every change of the patch; safe to call twice."""
        if self.removed:
            return
        while self._undo:
            self._undo.pop()()
        self.model.__dict__.pop(_PATCH_ATTR, None)
        self.removed = True

    def __repr__(self) -> str:
        return (
            f"TomePatch(model={type(self.model).__name__}, ratio={self.args.ratio:g}, "
            f"layers={len(self.layers)}, backends={self.backends}, removed={self.removed})"
        )


def apply_tome(
    pipe_or_model: Any,
    ratio: float,
    *,
    sx: int = 2,
    sy: int = 2,
    max_downsample: int | None = None,
    use_rand: bool = True,
    merge_attn: bool = True,
    merge_crossattn: bool = False,
    merge_mlp: bool = False,
    seed: int | None = None,
    method: str = "tome",
    share_matching: bool = True,
    backend: str = BACKEND_OURS,
) -> TomePatch:
    """Patch a pipeline's denoiser (or a bare model) with ToMe; re-applying replaces the patch.

    `method="tome"` merges `ratio` of the tokens (bipartite soft matching) around each patched
    self-attention; `method="todo"` keeps every query and removes `ratio` of the keys/values
    by k x k nearest downsampling (ratio 0.75, 0.889 or 0.9375). `share_matching=True` (the
    default; ToMe in our processors) computes one matching per resolution per forward, reused
    by the later layers there: faster, slightly different outputs; False gives tomesd's.
    `max_downsample=None` (the default) merges the finest level that has attention, wherever
    it is (/1 in SD 1.5, /2 in SDXL); an integer keeps tomesd's meaning: the layers at most
    that many times downsampled from the model's input (`patch.args` holds the level used).
    `backend` picks who merges Stable Diffusion's BasicTransformerBlocks: `"pytest-tome"`
    (the default, our processor) or `"tomesd"` (tomesd itself, the reference; it has no
    shared matchings and no ToDo); every other family is ours.
    Raises ValueError for bad arguments, TomeNotApplicable when ratio > 0 would merge nothing.
    """
    args = TomeArgs(
        ratio,
        sx,
        sy,
        max_downsample,
        use_rand,
        merge_attn,
        merge_crossattn,
        merge_mlp,
        seed,
        method=method,
        share_matching=share_matching,
        backend=backend,
    )
    model = model_of(pipe_or_model)
    remove_tome(model)
    sites = find_sites(model, args.backend)
    layers = select(sites, args)
    if args.ratio > 0:
        check_applicable(model, sites, layers, args)
    limit = resolve_max_downsample(sites, args)
    if limit is not None:  # the patch keeps the level it resolved: run-time checks use it
        args = dataclasses.replace(args, max_downsample=limit)
    patch = TomePatch(model, args, layers)
    model.__dict__[_PATCH_ATTR] = patch
    try:
        patch.add_hook(model.register_forward_pre_hook(patch.reducer.start_forward))
        for family in FAMILIES:
            mine = [layer for layer in layers if layer.family == family.name]
            if mine:
                family.install(patch, mine)
    except BaseException:
        patch.remove()
        raise
    return patch


def remove_tome(pipe_or_model: Any) -> bool:
    """Undo `apply_tome` on a pipeline or model; True if there was a patch to remove."""
    model = model_of(pipe_or_model)
    patch = model.__dict__.get(_PATCH_ATTR)
    if patch is None:
        return False
    patch.remove()
    return True


@contextmanager
def tome_applied(pipe_or_model: Any, ratio: float, **kwargs: Any) -> Iterator[TomePatch]:
    """`with tome_applied(pipe, 0.5) as patch:` ToMe inside the block, removed on exit."""
    patch = apply_tome(pipe_or_model, ratio, **kwargs)
    try:
        yield patch
    finally:
        patch.remove()


def patch_of(pipe_or_model: Any) -> TomePatch | None:
    """The TomePatch applied to a pipeline's denoiser (or a model) now; None if unpatched."""
    return model_of(pipe_or_model).__dict__.get(_PATCH_ATTR)


def model_of(pipe_or_model: Any) -> nn.Module:
    """The denoiser of a pipeline (`.unet`, else `.transformer`), or the module itself."""
    for attribute in ("unet", "transformer"):
        model = getattr(pipe_or_model, attribute, None)
        if isinstance(model, nn.Module):
            return model
    if isinstance(pipe_or_model, nn.Module):
        return pipe_or_model
    raise TypeError(
        "expected a diffusers pipeline with a `.unet` or `.transformer`, or a torch.nn.Module, "
        f"got {type(pipe_or_model).__name__}"
    )
