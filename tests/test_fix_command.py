"""The fix command a missing baseline prints keeps every option that shaped the run."""

from __future__ import annotations

from pathlib import Path

from pytest_tome.gate.store.commands import save_command
from pytest_tome.models.spec import ModelSpec
from pytest_tome.settings import TomeSettings

NODE = "tests/test_gate.py::test_tome_gate[tiny-sd-r0.5]"


def test_defaults_give_the_short_command(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    settings = TomeSettings(baselines=tmp_path / "baselines")
    assert save_command(NODE, ModelSpec("tiny-sd", "embedded"), 0.5, settings) == (
        f"pytest '{NODE}' --tome-models=tiny-sd --tome-ratios=0.5 --tome-save-baselines"
    )


def test_every_option_that_shaped_the_run_is_kept(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    settings = TomeSettings(
        baselines=tmp_path / "my baselines",
        device="cuda:0",
        dtype="float16",
        steps=2,
        seed=7,
        images=3,
        rounds=4,
        warmup=2,
    )
    command = save_command(NODE, ModelSpec("arch:sd15-512", "arch"), 0.3, settings)
    for word in (
        "--tome-models=arch:sd15-512", "--tome-ratios=0.3", "--tome-device=cuda:0",
        "--tome-dtype=float16", "--tome-steps=2", "--tome-seed=7", "--tome-images=3",
        "--tome-rounds=4", "--tome-warmup=2", "--tome-baselines='my baselines'",
    ):  # fmt: skip
        assert f" {word} " in command, (word, command)
    assert command.endswith(" --tome-save-baselines")


def test_a_baselines_folder_elsewhere_is_named_relative_to_here(tmp_path, monkeypatch) -> None:
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    settings = TomeSettings(baselines=Path(tmp_path / "shared" / "baselines"))
    command = save_command(NODE, ModelSpec("tiny-sd", "embedded"), 0.5, settings)
    assert " --tome-baselines=../shared/baselines " in command
