"""Embedded pipelines and real checkpoint loading."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from pytest_tome.gate.measure.pipeline_calls import generate
from pytest_tome.models.embedded import EMBEDDED, build_embedded
from pytest_tome.models.loading import load_pipeline
from pytest_tome.models.spec import ModelLoadError, ModelSpec, resolve_model

CPU, F32 = torch.device("cpu"), torch.float32


def _images(pipe, ratio: float = 0.0, steps: int = 2, images: int = 1) -> np.ndarray:
    return generate(pipe, ratio, steps=steps, seed=0, images=images)


@pytest.fixture(scope="module")
def pipes() -> dict:
    return {name: load_pipeline(ModelSpec(name, "embedded"), CPU, F32) for name in EMBEDDED}


@pytest.mark.parametrize("name", list(EMBEDDED))
def test_embedded_pipeline_is_bit_identical_across_builds(name: str, pipes: dict) -> None:
    again = load_pipeline(ModelSpec(name, "embedded"), CPU, F32)
    for (key, a), b in zip(pipes[name].components.items(), again.components.values()):
        if isinstance(a, torch.nn.Module):
            for pa, pb in zip(a.state_dict().values(), b.state_dict().values()):
                assert torch.equal(pa, pb), f"{name}.{key} weights differ between builds"
    np.testing.assert_array_equal(_images(pipes[name]), _images(again))


# 48x48 where attention runs at full resolution (2304 tokens; kept small for the gate's time).
IMAGE_SIDE = {"tiny-ddpm": 48, "tiny-sd": 48, "faces-ddpm": 32}


@pytest.mark.parametrize("name", list(EMBEDDED))
def test_embedded_images_have_shape_dtype_and_range(name: str, pipes: dict) -> None:
    images = _images(pipes[name], images=2)
    side = IMAGE_SIDE.get(name, 64)
    assert images.shape == (2, side, side, 3)
    assert images.dtype == np.float32
    assert images.min() >= 0.0 and images.max() <= 1.0
    assert images.std() > 0.01, "a blank image says the pipeline is broken"


def test_building_does_not_touch_the_global_rng() -> None:
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    build_embedded("tiny-ldm")
    assert torch.equal(torch.rand(3), expected)


def test_tiny_sd_has_a_transformer_level_at_2304_tokens(pipes: dict) -> None:
    unet = pipes["tiny-sd"].unet
    assert unet.config.sample_size == 48
    assert unet.down_blocks[0].__class__.__name__ == "CrossAttnDownBlock2D"


def test_tiny_tokenizer_round_trips_text(pipes: dict) -> None:
    tokenizer = pipes["tiny-sd"].tokenizer
    ids = tokenizer("a face").input_ids
    assert ids[0] == tokenizer.bos_token_id and ids[-1] == tokenizer.eos_token_id
    assert tokenizer.decode(ids, skip_special_tokens=True).replace(" ", "") == "aface"


def test_from_pretrained_on_a_saved_folder_gives_the_same_images(
    tmp_path: Path, pipes: dict
) -> None:
    pipes["tiny-ldm"].save_pretrained(tmp_path / "tiny-ldm")
    spec = resolve_model(str(tmp_path / "tiny-ldm"))
    assert spec.kind == "folder"
    loaded = load_pipeline(spec, CPU, F32)
    assert type(loaded).__name__ == "LDMPipeline"
    # Same weights, but loaded tensors sit at other addresses, so BLAS may pick other
    # kernels: equal to float32 rounding, and bit-identical from one load to the next.
    np.testing.assert_allclose(_images(loaded), _images(pipes["tiny-ldm"]), atol=1e-5)
    np.testing.assert_array_equal(_images(loaded), _images(load_pipeline(spec, CPU, F32)))


def test_a_hub_id_that_is_not_cached_fails_clearly_offline(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    spec = resolve_model("google/ddpm-celebahq-256")
    assert spec.kind == "hub"
    with pytest.raises(
        ModelLoadError,
        match=r"cannot load hub id 'google/ddpm-celebahq-256'.*"
        r"not in the local Hugging Face cache",
    ):
        load_pipeline(spec, CPU, F32)


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("tiny-nope", "unknown model 'tiny-nope'"),
        ("a/b/c", "unknown model 'a/b/c'"),
        ("arch:nope", "unknown architecture preset"),
    ],
)
def test_resolve_rejects_unknown_entries(entry: str, message: str) -> None:
    with pytest.raises(ModelLoadError, match=message):
        resolve_model(entry, presets=("arch:x",))


def test_model_key_is_file_system_safe() -> None:
    assert ModelSpec("google/ddpm-celebahq-256", "hub").key == "google-ddpm-celebahq-256"
    assert ModelSpec("arch:sd15-512", "arch").key == "arch-sd15-512"


def test_the_seeded_noise_comes_from_a_cpu_generator_whatever_the_device() -> None:
    """On CUDA, LDMPipeline draws its noise without a device, so a CUDA generator made the gate
    fail there ("Cannot generate a cpu tensor from a generator of type cuda", gpu-check)."""
    from pytest_tome.gate.measure.pipeline_calls import run_pipeline

    seen = []

    class CudaPipeline:  # reports a CUDA device, as a pipeline moved there does
        device = torch.device("cuda")

        def __call__(self, num_inference_steps, generator, output_type, batch_size):
            seen.append(generator.device)
            noise = torch.randn(batch_size, 4, 4, 3, generator=generator)  # as LDMPipeline does
            return type("Out", (), {"images": noise.clamp(0, 1).numpy()})()

    first = run_pipeline(CudaPipeline(), steps=2, seed=5, images=2)
    second = run_pipeline(CudaPipeline(), steps=2, seed=5, images=2)
    assert seen == [torch.device("cpu")] * 2
    assert np.array_equal(first, second)


def test_an_ldm_pipeline_runs_in_half_precision() -> None:
    """LDMPipeline hands float32 latents to a bfloat16/float16 UNet and decoder; gpu-check saw
    faces-ldm fail in float16 ("Input type (float) and bias type (c10::Half)")."""
    pipe = load_pipeline(ModelSpec("tiny-ldm", "embedded"), CPU, torch.bfloat16)
    images = generate(pipe, 0.5, steps=2, seed=0, images=1)
    assert images.shape[0] == 1 and np.isfinite(images).all()
