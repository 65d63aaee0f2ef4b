"""SDXL: the tiny pipeline's shape and determinism, the default merging its finest attention
level (/2), tomesd's silent no-op with its defaults caught, and the SDXL base preset's size."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tomesd
import torch

from pytest_tome.engine import (
    BACKEND_OURS,
    BACKEND_TOMESD,
    TomeNotApplicable,
    apply_tome,
    patch_of,
    tome_applied,
)
from pytest_tome.gate.measure.pipeline_calls import denoiser_forward, generate, run_pipeline
from pytest_tome.models.embedded import build_embedded
from pytest_tome.models.presets import PRESETS, build_preset, preset_unet
from pytest_tome.models.presets_sdxl import SDXL_BASE

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

RUN = {"steps": 2, "seed": 0, "images": 1}


@pytest.fixture(scope="module")
def sdxl() -> Any:
    pipe = build_embedded("tiny-sdxl")
    pipe.set_progress_bar_config(disable=True)
    return pipe


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_tiny_sdxl_is_shaped_like_sdxl(sdxl: Any) -> None:
    assert type(sdxl).__name__ == "StableDiffusionXLPipeline"
    assert type(sdxl.text_encoder).__name__ == "CLIPTextModel"
    assert type(sdxl.text_encoder_2).__name__ == "CLIPTextModelWithProjection"
    assert sdxl.tokenizer is not None and sdxl.tokenizer_2 is not None
    config = sdxl.unet.config
    assert config.down_block_types[0] == "DownBlock2D"
    assert set(config.down_block_types[1:]) == {"CrossAttnDownBlock2D"}
    assert config.transformer_layers_per_block[-1] > 1
    assert config.addition_embed_type == "text_time"
    assert config.use_linear_projection
    width = sdxl.text_encoder.config.hidden_size + sdxl.text_encoder_2.config.hidden_size
    assert config.cross_attention_dim == width  # both encoders' states, concatenated
    assert type(sdxl.scheduler).__name__ == "DDIMScheduler"
    assert count(sdxl.unet) == 1_403_508


def test_tiny_sdxl_is_bit_identical_run_to_run(sdxl: Any) -> None:
    first = run_pipeline(sdxl, **RUN)
    again = build_embedded("tiny-sdxl")
    again.set_progress_bar_config(disable=True)
    assert first.shape == (1, 64, 64, 3)
    assert np.array_equal(first, run_pipeline(again, **RUN))
    assert np.array_equal(generate(sdxl, 0.5, **RUN), generate(again, 0.5, **RUN))


@pytest.mark.parametrize("backend", [BACKEND_OURS, BACKEND_TOMESD])
def test_the_default_merges_the_finest_attention_level(sdxl: Any, backend: str) -> None:
    with tome_applied(sdxl, 0.5, seed=0, backend=backend) as patch:
        run_pipeline(sdxl, **RUN)
        assert patch.args.max_downsample == 2
        assert len(patch.layers) == 3  # one attention down, two up, at /2
        assert all(name.split(".")[0:2] in (["down_blocks", "1"], ["up_blocks", "1"])
                   for name in patch.names)  # fmt: skip
        assert {layer.downsample for layer in patch.layers} == {2}
        assert set(patch.tokens().values()) == {(1024, 512)}  # >= 1024 tokens at /2
        assert patch.idle_layers() == []
        description = patch.describe()
    assert f"down_blocks.1.attentions.0.transformer_blocks.0 [{backend}, /2]: " in description
    assert "1024 -> 512 tokens" in description


def test_bare_tomesd_with_its_defaults_leaves_sdxl_unchanged(sdxl: Any) -> None:
    plain = run_pipeline(sdxl, **RUN)
    tomesd.apply_patch(sdxl, ratio=0.5)  # max_downsample=1: SDXL has no attention at /1
    try:
        patched = sum(type(m).__name__ == "ToMeBlock" for m in sdxl.unet.modules())
        defaults = run_pipeline(sdxl, **RUN)
    finally:
        tomesd.remove_patch(sdxl)
    assert patched == 11  # every transformer block patched (1 + 2 down, 2 mid, 4 + 2 up) ...
    assert float(np.abs(defaults - plain).max()) == 0.0  # ... and nothing merged
    tomesd.apply_patch(sdxl, ratio=0.5, max_downsample=2)  # the fix: reach /2
    try:
        fixed = run_pipeline(sdxl, **RUN)
    finally:
        tomesd.remove_patch(sdxl)
    assert float(np.abs(fixed - plain).max()) > 0.0


@pytest.mark.parametrize("backend", [BACKEND_TOMESD, BACKEND_OURS])
def test_tomesds_default_max_downsample_is_refused_on_sdxl(sdxl: Any, backend: str) -> None:
    with pytest.raises(
        TomeNotApplicable,
        match=r"UNet2DConditionModel: all its attention layers are beyond max_downsample=1 "
        r"\(tomesd's default; tomesd.apply_patch with it changes nothing here and says "
        r"nothing\): its first attention is at /2 .*pass max_downsample=2 or leave "
        r"max_downsample=None",
    ):
        apply_tome(sdxl, 0.5, backend=backend, max_downsample=1)
    assert patch_of(sdxl) is None  # nothing was left patched
    assert not any(type(m).__name__ == "ToMeBlock" for m in sdxl.unet.modules())


def test_sdxl_base_preset_has_the_real_parameter_counts() -> None:
    assert SDXL_BASE in PRESETS
    with torch.device("meta"):
        pipe = build_preset(SDXL_BASE)
        unet = preset_unet(SDXL_BASE)
    assert type(pipe).__name__ == "StableDiffusionXLPipeline"
    assert count(pipe.unet) == count(unet) == 2_567_463_684
    parts = {k: count(getattr(pipe, k)) for k in ("vae", "text_encoder", "text_encoder_2")}
    assert parts == {"vae": 83_653_863, "text_encoder": 123_060_480, "text_encoder_2": 694_659_840}
    total = sum(count(m) for m in pipe.components.values() if isinstance(m, torch.nn.Module))
    assert total == 3_468_837_867
    config = unet.config
    assert 2 ** (len(pipe.vae.config.block_out_channels) - 1) * config.sample_size == 1024
    assert config.cross_attention_dim == (
        pipe.text_encoder.config.hidden_size + pipe.text_encoder_2.config.hidden_size
    )
    pooled = config.projection_class_embeddings_input_dim - 6 * config.addition_time_embed_dim
    assert pooled == pipe.text_encoder_2.config.projection_dim


def test_the_headroom_forward_gives_sdxl_its_added_conditioning(sdxl: Any) -> None:
    seen = {}

    def keep(module: torch.nn.Module, args: tuple, kwargs: dict) -> None:
        seen.update(kwargs["added_cond_kwargs"])

    handle = sdxl.unet.register_forward_pre_hook(keep, with_kwargs=True)
    try:
        denoiser_forward(sdxl)()
    finally:
        handle.remove()
    assert seen["text_embeds"].shape == (2, sdxl.text_encoder_2.config.projection_dim)
    assert seen["time_ids"].tolist() == [[512, 512, 0, 0, 512, 512]] * 2


def test_the_gate_has_no_sdxl_special_case() -> None:
    """What SDXL adds (two encoders, added conditioning) lives in models/ and the families."""
    import pytest_tome.gate

    words = ("tiny-sdxl", "stablediffusionxl", "text_time", "text_encoder_2", "time_ids")
    for path in Path(pytest_tome.gate.__file__).parent.rglob("*.py"):
        code = path.read_text(encoding="utf-8").lower()
        assert not [w for w in words if w in code], path


def test_the_sdxl_preset_collects(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        "def test_user(tome_model, tome_ratio):\n    assert tome_model.weights_are_random\n"
    )
    result = pytester.runpytest(
        "--collect-only", "-q", f"--tome-models={SDXL_BASE}", "--tome-ratios=0.3,0.5"
    )
    result.stdout.fnmatch_lines(
        ["*test_user[[]arch:sdxl-base-1024-r0.3[]]", "*test_user[[]arch:sdxl-base-1024-r0.5[]]"]
    )
    assert result.ret == 0


USER_GATE = """
import numpy as np

def test_merged_images_are_valid(tome_pipeline, tome_ratio, tome_generate):
    images = tome_generate(ratio=tome_ratio)
    assert images.shape[-1] == 3
    assert not np.array_equal(images, tome_generate(ratio=0.0))

def test_tome_gate(tome_gate, tome_ratio):
    tome_gate(tome_ratio)

def test_todo_gate(tome_gate):
    tome_gate(0.75, method="todo")
"""


@pytest.mark.slow
def test_a_users_gate_file_saves_then_passes_on_tiny_sdxl(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_user_gate=USER_GATE)
    args = (
        "--tome-models=tiny-sdxl", "--tome-ratios=0.3,0.5", "--tome-steps=2", "--tome-rounds=4",
        "--tome-max-rounds=6", "--tome-warmup=1", "--tome-baselines=baselines",
        # A shared CPU: noise must not fail this test of the flow.
        "--tome-tol-speed=50%", "--tome-inconclusive=warn",
        "-p", "no:randomly", "-p", "no:cacheprovider",
    )  # fmt: skip
    pytester.runpytest(*args, "--tome-save-baselines").assert_outcomes(passed=5)
    saved = json.loads((pytester.path / "baselines" / "cpu" / "tiny-sdxl.json").read_text())
    assert sorted(saved["entries"]) == ["0.3", "0.5", "todo-r0.75"]
    assert all(entry["fingerprint"]["tome"]["max_downsample"] is None
               for entry in saved["entries"].values())  # fmt: skip
    again = pytester.runpytest(*args)
    again.assert_outcomes(passed=5)
    again.stdout.fnmatch_lines(
        [
            "tiny-sdxl (cpu; 3 patched layers)",
            "    ratio  time per image*",
            "      0.3  * ms (base * ms)  *",
            "      0.5  * ms (base * ms)  *",
            "todo 0.75  * ms (base * ms)  *",
            "patched layers take *% of a denoiser forward: speedup bound *x (Amdahl)",
            "merged 3 layers at /2: 1024 tokens -> 717 at 0.3, 512 at 0.5, 256 at todo 0.75",
        ]
    )
