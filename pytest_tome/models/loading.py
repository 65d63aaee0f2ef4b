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
        if type(pipe).__name__ == "LDMPipeline":
            _cast_inputs(pipe, dtype)
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


def _cast_inputs(pipe: Any, dtype: torch.dtype) -> None:
    """diffusers' LDMPipeline draws float32 noise and keeps its latents in float32 whatever the
    models' dtype, so a float16 or bfloat16 UNet or decoder gets float32 input and fails; and
    it turns the decoded image into numpy, which has no bfloat16. Cast what the pipeline hands
    the UNet and the decoder, and give the decoded image back in float32."""
    unet_forward, decode = pipe.unet.forward, pipe.vqvae.decode

    def forward(sample: Any, *args: Any, **kwargs: Any) -> Any:
        return unet_forward(sample.to(dtype), *args, **kwargs)

    def decode_float(latents: Any, *args: Any, **kwargs: Any) -> Any:
        out = decode(latents.to(dtype), *args, **kwargs)
        out.sample = out.sample.float()
        return out

    pipe.unet.forward, pipe.vqvae.decode = forward, decode_float
