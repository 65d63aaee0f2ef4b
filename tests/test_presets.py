"""Architecture presets: the real configs, checked by parameter count on the meta device."""

from __future__ import annotations

import pytest
import torch

from pytest_tome.engine import BACKEND_OURS, BACKEND_TOMESD, apply_tome, remove_tome
from pytest_tome.engine.discovery import find_sites
from pytest_tome.models.presets import PRESETS, build_preset, preset_unet


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize(
    ("name", "pipeline", "unet_params", "others"),
    [
        ("arch:ddpm-celebahq-256", "DDPMPipeline", 113_673_219, {}),
        ("arch:ldm-celebahq-256", "LDMPipeline", 274_056_163, {"vqvae": 55_322_782}),
        (
            "arch:sd15-512",
            "StableDiffusionPipeline",
            859_520_964,
            {"vae": 83_653_863, "text_encoder": 123_060_480},
        ),
    ],
)
def test_presets_have_the_real_parameter_counts(
    name: str, pipeline: str, unet_params: int, others: dict
) -> None:
    with torch.device("meta"):
        pipe = build_preset(name)
        unet = preset_unet(name)
    assert type(pipe).__name__ == pipeline
    assert count(pipe.unet) == count(unet) == unet_params
    assert {k: count(getattr(pipe, k)) for k in others} == others


def test_latent_shapes_match_the_models() -> None:
    with torch.device("meta"):
        ldm, sd = build_preset("arch:ldm-celebahq-256"), build_preset("arch:sd15-512")
    assert ldm.vqvae.config.num_vq_embeddings == 8192
    assert ldm.vqvae.config.latent_channels == ldm.unet.config.in_channels == 3
    assert 2 ** (len(ldm.vqvae.config.block_out_channels) - 1) * ldm.unet.config.sample_size == 256
    assert sd.vae.config.latent_channels == sd.unet.config.in_channels == 4
    assert sd.text_encoder.config.vocab_size == 49408
    assert sd.text_encoder.config.hidden_size == sd.unet.config.cross_attention_dim == 768
    assert len(sd.tokenizer) <= sd.text_encoder.config.vocab_size


SDXL_FIRST = "down_blocks.1.attentions.0.transformer_blocks.0"


@pytest.mark.parametrize(
    ("name", "backend", "first", "downsample", "layers"),
    [
        ("arch:ddpm-celebahq-256", BACKEND_OURS, "down_blocks.4.attentions.0", 16, 5),  # 16x16
        ("arch:ldm-celebahq-256", BACKEND_OURS, "down_blocks.1.attentions.0", 2, 5),  # 32x32
        ("arch:sd15-512", BACKEND_OURS, "down_blocks.0.attentions.0.transformer_blocks.0", 1, 5),
        ("arch:sd15-512", BACKEND_TOMESD, "down_blocks.0.attentions.0.transformer_blocks.0", 1, 5),
        # 2 + 3 attentions of 2 transformer layers each at /2 (64x64 tokens at 1024 px)
        ("arch:sdxl-base-1024", BACKEND_OURS, SDXL_FIRST, 2, 10),
        ("arch:sdxl-base-1024", BACKEND_TOMESD, SDXL_FIRST, 2, 10),
    ],
)
def test_tome_patches_the_largest_attention_layers(
    name: str, backend: str, first: str, downsample: int, layers: int
) -> None:
    with torch.device("meta"):
        unet = preset_unet(name)
    patch = apply_tome(unet, 0.5, backend=backend)
    try:
        assert patch.backends == (backend,)
        assert patch.names[0] == first
        assert {layer.downsample for layer in patch.layers} == {downsample}
        assert len(patch.layers) == layers  # two in the down block, three in the up block
    finally:
        remove_tome(unet)


def test_seeded_weights_do_not_touch_the_global_rng() -> None:
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    with torch.device("meta"):
        preset_unet("arch:ldm-celebahq-256")
    assert torch.equal(torch.rand(3), expected)


def test_unknown_preset_lists_the_known_ones() -> None:
    with pytest.raises(
        ValueError, match=r"unknown architecture preset 'arch:sd21'; known: arch:ddpm"
    ):
        build_preset("arch:sd21")
    with pytest.raises(ValueError, match=", ".join(PRESETS)):
        preset_unet("sd15")


@pytest.mark.parametrize(
    ("name", "pipeline", "transformer_params", "others", "tokens"),
    [
        # diffusers gives each DiT block its own timestep/class embedder (2,776,704 each);
        # the original DiT-XL/2 shares one, hence its published 675M.
        ("arch:dit-xl-2-256", "DiTPipeline", 749_826_464, {"vae": 83_653_863}, 16 * 16),
        (
            "arch:pixart-alpha-512",
            "PixArtAlphaPipeline",
            610_856_096,
            {"vae": 83_653_863, "text_encoder": 324_548_608},  # T5-XXL width, one layer
            32 * 32,
        ),
    ],
)
def test_transformer_presets_have_the_real_sizes(
    name: str, pipeline: str, transformer_params: int, others: dict, tokens: int
) -> None:
    with torch.device("meta"):
        pipe = build_preset(name)
        transformer = preset_unet(name)
    assert type(pipe).__name__ == pipeline
    assert count(pipe.transformer) == count(transformer) == transformer_params
    assert {k: count(getattr(pipe, k)) for k in others} == others
    assert pipe.vae.config.latent_channels == transformer.config.in_channels == 4
    patch = apply_tome(transformer, 0.5)
    try:
        assert patch.backends == (BACKEND_OURS,)
        assert len(patch.layers) == 28
        family = patch.layers[0].family
        site = next(s for s in find_sites(transformer) if s.module is patch.layers[0].module)
        h, w = site.family.grid(transformer, site)
        assert (family, h * w) == ("transformer-backbone", tokens)  # patches, not latent pixels
    finally:
        remove_tome(transformer)
