"""The SD3-medium preset: the published parameter counts, and ToMe on every joint block."""

from __future__ import annotations

import pytest
import torch

from pytest_tome.engine import BACKEND_OURS, apply_tome, remove_tome
from pytest_tome.engine.families import joint
from pytest_tome.gate.measure.joint_inputs import joint_forward_inputs
from pytest_tome.models.presets import PRESETS, build_preset, preset_unet
from pytest_tome.models.presets_joint import SD3_MEDIUM

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_sd3_medium_has_the_published_parameter_counts() -> None:
    assert SD3_MEDIUM in PRESETS
    with torch.device("meta"):
        pipe = build_preset(SD3_MEDIUM)
        transformer = preset_unet(SD3_MEDIUM)
    assert type(pipe).__name__ == "StableDiffusion3Pipeline"
    assert count(pipe.transformer) == count(transformer) == 2_028_328_000
    assert count(pipe.vae) == 83_819_683
    assert count(pipe.text_encoder) == 123_650_304
    assert count(pipe.text_encoder_2) == 694_659_840
    assert pipe.text_encoder_3 is None  # T5-XXL (4.76 B) would not fit in 24 GiB beside it
    total = sum(count(m) for m in pipe.components.values() if isinstance(m, torch.nn.Module))
    assert total * 4 < 12 * 2**30  # float32 bytes: fits a 24 GiB machine with room to run


def test_sd3_medium_pipeline_shapes_agree() -> None:
    with torch.device("meta"):
        pipe = build_preset(SD3_MEDIUM)
    config = pipe.transformer.config
    assert pipe.vae.config.latent_channels == config.in_channels == 16
    clip = pipe.text_encoder.config.projection_dim + pipe.text_encoder_2.config.projection_dim
    assert clip == config.pooled_projection_dim
    scale = 2 ** (len(pipe.vae.config.block_out_channels) - 1)
    assert scale * config.sample_size == 1024
    inputs = joint_forward_inputs(pipe, torch.Generator().manual_seed(0))
    assert inputs["encoder_hidden_states"].shape == (2, 77 + 77, 4096)


def test_tome_patches_every_joint_block_at_4096_tokens() -> None:
    with torch.device("meta"):
        transformer = preset_unet(SD3_MEDIUM)
    patch = apply_tome(transformer, 0.5)
    try:
        assert patch.backends == (BACKEND_OURS,)
        assert patch.names == [f"transformer_blocks.{i}.attn" for i in range(24)]
        assert {layer.family for layer in patch.layers} == {joint.FAMILY.name}
        site = joint.FAMILY.sites(transformer)[0]
        assert joint.FAMILY.grid(transformer, site) == (64, 64)  # 4096 image tokens
    finally:
        remove_tome(transformer)
