"""The plugin seen from a user's seat: options, parametrization, header, errors, fixtures."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pytest_tome.methods import METHODS, TODO_FACTORS, todo_ratio
from pytest_tome.models import embedded, presets
from pytest_tome.models.embedded import DEFAULT_MODELS, EMBEDDED
from pytest_tome.options import OPTIONS
from pytest_tome.parsers import (
    CLOCKS,
    DEVICES,
    DTYPES,
    INCONCLUSIVE_POLICIES,
    MAX_RATIOS,
    SWEEP,
)
from pytest_tome.settings import BASELINES_FOLDER

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

USER_TEST = """
def test_merged_images_are_valid(tome_pipeline, tome_ratio, tome_generate):
    images = tome_generate(ratio=tome_ratio)
    assert images.shape[-1] == 3
    assert images.dtype.name == "float32"
    assert 0.0 <= images.min() and images.max() <= 1.0
"""


def test_help_lists_every_option_in_the_tome_group(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--help")
    assert result.ret == 0
    result.stdout.fnmatch_lines(["token merging (pytest-tome):"])
    for opt in OPTIONS:
        result.stdout.fnmatch_lines([f"*{opt.flag}*"])
        result.stdout.fnmatch_lines([f"*{opt.dest} (*"])  # the ini key


def _tome_help(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Each option's help text in `pytest --help`, one unwrapped line per flag."""
    monkeypatch.setenv("COLUMNS", "1000")  # no wrapping: a name is never split over lines
    result = pytester.runpytest("--help")
    assert result.ret == 0
    lines = result.outlines
    section = lines[lines.index("token merging (pytest-tome):") + 1 :]
    section = section[: section.index("")]
    text = " ".join(line.strip() for line in section)
    flags = [opt.flag for opt in OPTIONS]
    helps = {}
    for flag, after in zip(flags, [*flags[1:], None]):
        start = text.index(flag)
        helps[flag] = text[start : text.index(after) if after else len(text)].strip()
    return helps


def test_every_name_and_default_in_the_help_comes_from_the_code(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Help drift: names and defaults are read from the tables the parsers use."""
    helps = _tome_help(pytester, monkeypatch)
    for opt in OPTIONS:
        defaults = re.findall(r"\(default: ([^)]*)\)", helps[opt.flag])
        if opt.parse is None:  # a flag: off unless given
            assert defaults == [], opt.flag
            continue
        assert defaults == [opt.default_help], opt.flag  # one, and the option's own
        if opt.default is not None:
            opt.parse(opt.default)  # a default is valid input
    assert helps["--tome-baselines"].endswith(f"(default: <rootdir>/{BASELINES_FOLDER})")
    models = helps["--tome-models"]
    assert set(re.findall(r"tiny-[\w-]+", models)) == set(EMBEDDED) | set(DEFAULT_MODELS)
    assert f"({', '.join(EMBEDDED)})" in models
    assert set(DEFAULT_MODELS) <= set(EMBEDDED)
    named = {
        "--tome-methods": METHODS,
        "--tome-device": DEVICES,
        "--tome-dtype": DTYPES,
        "--tome-clock": CLOCKS,
        "--tome-inconclusive": INCONCLUSIVE_POLICIES,
    }
    for flag, table in named.items():
        assert all(re.search(rf"\b{re.escape(name)}\b", helps[flag]) for name in table), flag
    todo = [f"{todo_ratio(k):.4g}" for k in TODO_FACTORS]
    assert f"ratios {', '.join(todo)})" in helps["--tome-methods"]
    ratios = helps["--tome-ratios"]
    assert f"sweep ({SWEEP[0]:g}..{SWEEP[-1]:g})" in ratios and f"at most {MAX_RATIOS}" in ratios


def test_the_readme_names_files_that_exist_and_tables_that_hold_its_names() -> None:
    """README drift: "Adding a model" and the layout notes name files where they are now."""
    root = Path(__file__).parents[1]
    readme = (root / "README.md").read_text(encoding="utf-8")
    paths = set(re.findall(r"pytest_tome/[\w/]*(?:\.py)?", readme))
    assert "pytest_tome/models/embedded.py" in paths
    assert [p for p in sorted(paths) if not (root / p).exists()] == []
    adding = readme[readme.index("### Adding a model") :]
    for table, module in (("EMBEDDED", embedded), ("_PIPELINES", presets), ("_UNETS", presets)):
        assert f"`{table}`" in adding and hasattr(module, table)


def test_ratios_and_models_parametrize_with_readable_ids(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(USER_TEST)
    result = pytester.runpytest(
        "--collect-only", "-q", "--tome-ratios=0.3,0.5,0.3", "--tome-models=tiny-sd,tiny-ldm"
    )
    assert result.ret == 0
    result.stdout.fnmatch_lines(
        [
            "*test_merged_images_are_valid[[]tiny-sd-r0.3[]]",
            "*test_merged_images_are_valid[[]tiny-sd-r0.5[]]",
            "*test_merged_images_are_valid[[]tiny-ldm-r0.3[]]",
            "*test_merged_images_are_valid[[]tiny-ldm-r0.5[]]",
            "4 tests collected*",
        ]
    )


def test_ini_keys_set_the_same_options(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\ntome_ratios = 0.2\ntome_models = tiny-ddpm\n")
    pytester.makepyfile(USER_TEST)
    result = pytester.runpytest("--collect-only", "-q")
    result.stdout.fnmatch_lines(["*[[]tiny-ddpm-r0.2[]]", "1 test collected*"])
    # the command line wins over the ini file
    result = pytester.runpytest("--collect-only", "-q", "--tome-ratios=0.4")
    result.stdout.fnmatch_lines(["*[[]tiny-ddpm-r0.4[]]", "1 test collected*"])


def test_header_is_one_short_line_with_the_device_as_asked(pytester: pytest.Pytester) -> None:
    """The full settings and versions go to the pytest-tome summary of a gate run."""
    pytester.makepyfile(USER_TEST)
    result = pytester.runpytest(
        "--tome-ratios=0.3", "--tome-steps=2", "--tome-device=cpu", "--tome-models=tiny-ldm",
        "--tome-save-baselines", "--tome-baselines=b",
    )  # fmt: skip
    result.assert_outcomes(passed=1)
    tome_lines = [line for line in result.outlines if line.startswith("tome:")]
    assert tome_lines == ["tome: device=cpu dtype=float32 ratios=0.3 (saving baselines)"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--tome-ratios=abc"], "*ratio 'abc' is not a number*[[]0, 1)*"),
        (["--tome-ratios=1.2"], "*ratio 1.2 is out of range*[[]0, 1)*"),
        (["--tome-ratios=-0.1"], "*ratio -0.1 is out of range*[[]0, 1)*"),
        (["--tome-ratios="], "*empty ratio list*"),
        (["--tome-ratios=0.3,,0.5"], "*empty entry in ratio list '0.3,,0.5'*"),
        (["--tome-ratios=0.5:0.1:0.1"], "*ratio range '0.5:0.1:0.1' needs*stop >= start*"),
        (["--tome-models=tiny-nope"], "*unknown model 'tiny-nope'*tiny-ddpm, tiny-ldm, tiny-sd*"),
        (["--tome-models=arch:nope"], "*unknown architecture preset 'arch:nope'*"),
        (["--tome-models=./not-a-pipeline"], "*no model_index.json*"),
        (["--tome-models=./missing-folder"], "*folder './missing-folder' does not exist*"),
        (["--tome-device=tpu"], "*device 'tpu' is not one of auto, cpu, cuda, cuda:N, mps*"),
        (["--tome-steps=0"], "*steps 0 is too small; expected >= 1*"),
        (["--tome-steps=many"], "*steps 'many' is not a whole number*"),
        (["--tome-rounds=1"], "*rounds 1 is too small; expected >= 2*"),
        (["--tome-dtype=float64"], "*dtype 'float64' is not one of float32, float16, bfloat16*"),
        (["--tome-dtype=float16", "--tome-device=cpu"], "*float16 is not supported on the CPU*"),
        (["--tome-tol-speed=-5%"], "*tolerance speed='-5%' must be a finite number >= 0*"),
        (["--tome-tol-psnr=lots"], "*tolerance psnr='lots' is not a number*"),
    ],
)
def test_bad_input_is_a_usage_error_naming_the_value(
    pytester: pytest.Pytester, args: list[str], message: str
) -> None:
    pytester.mkdir("not-a-pipeline")
    pytester.makepyfile(USER_TEST)
    result = pytester.runpytest(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])
    assert "Traceback" not in result.stderr.str() + result.stdout.str()


def test_cuda_without_cuda_is_a_usage_error(pytester: pytest.Pytester) -> None:
    import torch

    if torch.cuda.is_available():  # the GPU gate machine: the option must then just work
        result = pytester.runpytest("--tome-device=cuda", "--collect-only")
        assert result.ret == pytest.ExitCode.NO_TESTS_COLLECTED
        return
    pytester.makepyfile(USER_TEST)  # checked once a test uses the plugin (it needs torch)
    result = pytester.runpytest("--tome-device=cuda")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--tome-device=cuda: CUDA is not available here*cpu or auto*"])


def test_bad_ini_value_is_a_usage_error_naming_the_key(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\ntome_steps = -3\n")
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*ini key tome_steps = '-3': steps -3 is too small*"])


def test_user_test_runs_once_per_model_per_ratio(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(USER_TEST)
    result = pytester.runpytest("--tome-models=tiny-ldm", "--tome-ratios=0,0.5", "--tome-steps=2")
    result.assert_outcomes(passed=2)


def test_settings_fixture_is_frozen_and_resolved(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import dataclasses, pytest

        def test_settings(tome_settings):
            assert tome_settings.ratios == (0.3, 0.5)
            assert [m.name for m in tome_settings.models] == ["tiny-ldm"]
            assert tome_settings.device == "cpu" and tome_settings.steps == 3
            with pytest.raises(dataclasses.FrozenInstanceError):
                tome_settings.steps = 5
        """
    )
    result = pytester.runpytest(
        "--tome-models=tiny-ldm", "--tome-ratios=0.3,0.5", "--tome-steps=3", "--tome-device=cpu"
    )
    result.assert_outcomes(passed=1)


def test_fixtures_run_on_a_saved_pipeline_folder(pytester: pytest.Pytester) -> None:
    from pytest_tome.models.embedded import build_embedded

    build_embedded("tiny-ldm").save_pretrained(pytester.path / "saved-ldm")
    pytester.makepyfile(USER_TEST)
    result = pytester.runpytest(
        "--tome-models=./saved-ldm", "--tome-ratios=0.5", "--tome-steps=2", "-v"
    )
    result.stdout.fnmatch_lines(["*test_merged_images_are_valid[[]./saved-ldm-r0.5[]] PASSED*"])
    result.assert_outcomes(passed=1)


def test_a_model_tome_cannot_merge_fails_with_the_reason(pytester: pytest.Pytester) -> None:
    from diffusers import DDPMPipeline, DDPMScheduler, UNet2DModel

    unet = UNet2DModel(
        sample_size=16,
        block_out_channels=(8, 16),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D"),
        norm_num_groups=4,
        add_attention=False,
    )
    DDPMPipeline(unet=unet, scheduler=DDPMScheduler()).save_pretrained(pytester.path / "no-attn")
    pytester.makepyfile(USER_TEST)
    result = pytester.runpytest("--tome-models=./no-attn", "--tome-ratios=0,0.5", "--tome-steps=1")
    result.assert_outcomes(passed=1, failed=1)  # ratio 0 needs no merging; 0.5 cannot merge
    result.stdout.fnmatch_lines(["*./no-attn: *UNet2DModel*attention*"])
    assert "Traceback" not in result.stdout.str()


def test_the_pipeline_is_built_once_per_model_per_session(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        seen = {}  # model -> every pipeline object a test got (kept alive: no id reuse)

        def test_first(tome_pipeline, tome_model, tome_ratio):
            seen.setdefault(tome_model.name, []).append(tome_pipeline)

        def test_second(tome_pipeline, tome_model, tome_ratio):
            seen.setdefault(tome_model.name, []).append(tome_pipeline)

        def test_zz_one_object_per_model():
            assert sorted(seen) == ["tiny-ddpm", "tiny-ldm"]
            for model, pipes in seen.items():
                assert len(pipes) == 4 and all(p is pipes[0] for p in pipes), model
        """
    )
    result = pytester.runpytest("--tome-models=tiny-ldm,tiny-ddpm", "--tome-ratios=0.3,0.5",
                                "-p", "no:randomly")  # fmt: skip
    result.assert_outcomes(passed=9)
