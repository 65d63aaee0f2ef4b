"""Pipelines under test: embedded tiny pipelines, real-architecture presets, and real checkpoints.

Embedded pipelines are built offline from configs with seeded weights, so they need no download
and give bit-identical images run to run on CPU. They are deliberately attention-heavy (the
first attention level sees 1024-4096 tokens), like the models token merging is meant for.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

EMBEDDED_SEED = 0


@dataclass(frozen=True)
class ModelSpec:
    """What `--tome-models` named, resolved: an embedded pipeline, a preset, or a checkpoint."""

    name: str  # as the user wrote it; also the test id and the baseline file's key
    kind: str  # "embedded" | "arch" | "folder" | "hub"
    weights_are_random: bool = False  # quality verdicts do not apply to random weights

    @property
    def key(self) -> str:
        """A file-system-safe key for baseline files and report names."""
        safe = "".join(c if c.isalnum() or c in "-_." else "-" for c in self.name)
        return safe.strip("-") or "model"


# --- embedded tiny pipelines -------------------------------------------------------------


def _tiny_ddpm() -> Any:
    from diffusers import DDPMPipeline, DDPMScheduler, UNet2DModel

    unet = UNet2DModel(
        sample_size=64,
        in_channels=3,
        out_channels=3,
        layers_per_block=1,
        block_out_channels=(32, 64),
        down_block_types=("AttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "AttnUpBlock2D"),
        attention_head_dim=8,
        norm_num_groups=8,
    )
    return DDPMPipeline(unet=unet, scheduler=DDPMScheduler(num_train_timesteps=1000))


def _tiny_ldm() -> Any:
    from diffusers import DDIMScheduler, LDMPipeline, UNet2DModel, VQModel

    vqvae = VQModel(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        block_out_channels=(16, 32),
        layers_per_block=1,
        latent_channels=3,
        num_vq_embeddings=64,
        norm_num_groups=8,
        sample_size=64,
    )
    unet = UNet2DModel(
        sample_size=32,
        in_channels=3,
        out_channels=3,
        layers_per_block=1,
        block_out_channels=(32, 64),
        down_block_types=("AttnDownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "AttnUpBlock2D"),
        attention_head_dim=8,
        norm_num_groups=8,
    )
    return LDMPipeline(vqvae=vqvae, unet=unet, scheduler=DDIMScheduler(num_train_timesteps=1000))


def _byte_vocab() -> dict[str, int]:
    """A CLIP-style byte-level vocabulary with no merges: every byte is a token."""
    # GPT-2's printable stand-ins for the 256 byte values, as CLIP's BPE expects.
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1)]
    printable += range(ord("®"), ord("ÿ") + 1)
    extra = (b for b in range(256) if b not in printable)
    chars = [chr(b) for b in printable] + [chr(256 + i) for i, _ in enumerate(extra)]
    tokens = chars + [c + "</w>" for c in chars] + ["<|startoftext|>", "<|endoftext|>"]
    return {tok: i for i, tok in enumerate(tokens)}


def _tiny_tokenizer() -> Any:
    from transformers import CLIPTokenizer

    with tempfile.TemporaryDirectory() as tmp:
        vocab, merges = Path(tmp, "vocab.json"), Path(tmp, "merges.txt")
        vocab.write_text(json.dumps(_byte_vocab()), encoding="utf-8")
        merges.write_text("#version: 0.2\n", encoding="utf-8")
        Path(tmp, "tokenizer_config.json").write_text(
            json.dumps({"model_max_length": 77}), encoding="utf-8"
        )
        return CLIPTokenizer.from_pretrained(tmp)


def _tiny_sd() -> Any:
    from diffusers import (
        AutoencoderKL,
        PNDMScheduler,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel

    tokenizer = _tiny_tokenizer()
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(tokenizer),
            hidden_size=32,
            intermediate_size=37,
            num_hidden_layers=2,
            num_attention_heads=4,
            max_position_embeddings=77,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
    )
    unet = UNet2DConditionModel(
        sample_size=64,
        in_channels=4,
        out_channels=4,
        layers_per_block=1,
        block_out_channels=(32, 64),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=2,  # SD's naming: the number of heads
        norm_num_groups=8,
    )
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",),
        up_block_types=("UpDecoderBlock2D",),
        block_out_channels=(16,),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=8,
        sample_size=64,
    )
    scheduler = PNDMScheduler(skip_prk_steps=True, steps_offset=1)
    return StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


EMBEDDED: dict[str, Callable[[], Any]] = {
    "tiny-ddpm": _tiny_ddpm,
    "tiny-ldm": _tiny_ldm,
    "tiny-sd": _tiny_sd,
}
DEFAULT_MODELS: tuple[str, ...] = tuple(EMBEDDED)


def build_embedded(name: str) -> Any:
    """Build an embedded pipeline with seeded weights; the same bits on every call."""
    import torch

    try:
        factory = EMBEDDED[name]
    except KeyError:
        raise ValueError(
            f"unknown embedded pipeline {name!r}; known: {', '.join(EMBEDDED)}"
        ) from None
    state = torch.random.get_rng_state()
    try:
        torch.manual_seed(EMBEDDED_SEED)
        pipe = factory()
    finally:
        torch.random.set_rng_state(state)
    for component in pipe.components.values():
        if isinstance(component, torch.nn.Module):
            component.eval()  # as from_pretrained leaves them; train mode changes kernels
    return pipe


# --- resolving and loading ---------------------------------------------------------------


class ModelLoadError(Exception):
    """A model named by the user cannot be resolved or loaded; the message says why."""


def resolve_model(entry: str, presets: tuple[str, ...] = ()) -> ModelSpec:
    """Classify one `--tome-models` entry without loading anything heavy.

    Raises ModelLoadError naming the entry and what would be valid.
    """
    entry = entry.strip()
    if entry in EMBEDDED:
        return ModelSpec(entry, "embedded")
    if entry.startswith("arch:"):
        if entry in presets:
            return ModelSpec(entry, "arch", weights_are_random=True)
        raise ModelLoadError(
            f"unknown architecture preset {entry!r}; known: {', '.join(presets) or '(none)'}"
        )
    path = Path(entry).expanduser()
    looks_like_path = entry.startswith((".", "/", "~")) or os.sep in entry and path.exists()
    if path.is_dir() or looks_like_path:
        if not path.is_dir():
            raise ModelLoadError(f"model folder {entry!r} does not exist")
        if not (path / "model_index.json").is_file():
            raise ModelLoadError(
                f"folder {entry!r} holds no model_index.json, so it is not a diffusers pipeline "
                "(save one with `pipe.save_pretrained(folder)`)"
            )
        return ModelSpec(entry, "folder")
    parts = entry.split("/")
    if len(parts) == 2 and all(parts) and " " not in entry:
        return ModelSpec(entry, "hub")
    raise ModelLoadError(
        f"unknown model {entry!r}: expected an embedded pipeline ({', '.join(EMBEDDED)}), "
        + (f"an architecture preset ({', '.join(presets)}), " if presets else "")
        + "a local folder with model_index.json, or a hub id like 'owner/name'"
    )


def load_pipeline(spec: ModelSpec, device: torch.device, dtype: torch.dtype) -> Any:
    """Build or load the pipeline `spec` names, on `device` in `dtype`, progress bars off."""
    if spec.kind == "embedded":
        pipe = build_embedded(spec.name)
    elif spec.kind == "arch":
        from pytest_tome.presets import build_preset

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
