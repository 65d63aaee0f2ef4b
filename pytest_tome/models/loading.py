"""Building or loading the pipeline a ModelSpec names, on a device and in a dtype."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from pytest_tome.models.spec import ModelLoadError, ModelSpec

if TYPE_CHECKING:
    import torch


def load_pipeline(spec: ModelSpec, device: torch.device, dtype: torch.dtype) -> Any:
    """Build or load the pipeline `spec` names, on `device` in `dtype`, progress bars off."""
    if spec.kind == "embedded":
        from pytest_tome.models.embedded import build_embedded

        pipe = build_embedded(spec.name)
    elif spec.kind == "arch":
        from pytest_tome.models.presets import build_preset

        pipe = build_preset(spec.name)
    else:
        pipe = _from_pretrained(spec)
    if pipe.dtype != dtype:
        pipe = pipe.to(dtype=dtype)
    pipe = pipe.to(device)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _from_pretrained(spec: ModelSpec) -> Any:
    from diffusers import DiffusionPipeline

    kwargs: dict[str, Any] = {}
    if spec.kind == "hub" and os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0"):
        kwargs["local_files_only"] = True
    try:
        return DiffusionPipeline.from_pretrained(spec.name, **kwargs)
    except Exception as exc:  # diffusers raises OSError, ValueError, HTTP errors...
        where = "folder" if spec.kind == "folder" else "hub id"
        hint = (
            "the weights are not in the local Hugging Face cache and cannot be downloaded; "
            "fetch them once on a machine with network (`hf download "
            f"{spec.name}`) and point HF_HOME at that cache"
            if spec.kind == "hub"
            else "check that the folder was written by `save_pretrained`"
        )
        raise ModelLoadError(
            f"cannot load {where} {spec.name!r}: {type(exc).__name__}: {exc}; {hint}"
        ) from exc
