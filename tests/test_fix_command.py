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


def test_fingerprinted_timing_settings_are_kept(tmp_path, monkeypatch) -> None:
    """threads and clock are in the fingerprint: a command without them saves a baseline
    that the run which printed it never matches."""
    monkeypatch.chdir(tmp_path)
    settings = TomeSettings(baselines=tmp_path / "baselines", threads=None, clock="wall")
    command = save_command(NODE, ModelSpec("tiny-sd", "embedded"), 0.5, settings)
    assert " --tome-threads=auto " in command and " --tome-clock=wall " in command, command


def test_every_fingerprinted_setting_is_in_the_command(tmp_path, monkeypatch) -> None:
    """The command is built from the fingerprint's own list: change any field of it from its
    default and the command names it."""
    from dataclasses import fields, replace

    from pytest_tome.gate.measure.plan import RunPlan
    from pytest_tome.gate.store.fingerprints import MEASURED_WITH, NOT_FINGERPRINTED, TIMED_WITH

    monkeypatch.chdir(tmp_path)
    base = TomeSettings(baselines=tmp_path / "baselines")
    other = {"dtype": "bfloat16", "steps": 9, "seed": 3, "images": 2, "threads": 4, "clock": "wall"}
    for name in (*MEASURED_WITH, *TIMED_WITH):
        settings = replace(base, **{name: other[name]})
        command = save_command(NODE, ModelSpec("tiny-sd", "embedded"), 0.5, settings)
        assert f" --tome-{name}={other[name]} " in command, (name, command)
    # a new RunPlan field must be put on one side or the other
    classified = {*MEASURED_WITH, *TIMED_WITH, *NOT_FINGERPRINTED}
    assert {f.name for f in fields(RunPlan)} == classified


def test_the_fingerprint_holds_the_listed_settings() -> None:
    from pytest_tome.gate.measure.plan import run_plan
    from pytest_tome.gate.store.fingerprints import MEASURED_WITH, TIMED_WITH, plan_fingerprint

    plan = run_plan(TomeSettings(threads=None), "tiny-sd", 0.5, "tome")
    fp = plan_fingerprint(plan, 3, resolution=[8, 8], tome={})
    assert {*MEASURED_WITH, *TIMED_WITH} <= set(fp)
    assert (fp["threads"], fp["clock"]) == (3, "wall")


ROUND_TRIP = """
def test_gate(tome_gate, tome_ratio):
    tome_gate(tome_ratio)
"""


def test_the_printed_command_saves_a_baseline_the_run_then_matches(pytester) -> None:
    """Run with a non-default fingerprinted setting, save with the command the failure
    prints, rerun: the baseline is found and its fingerprint matches (the command used to
    drop --tome-threads and --tome-clock, so the rerun never matched)."""
    import shlex

    pytester.makepyfile(test_user_gate=ROUND_TRIP)
    run = (
        "--tome-models=tiny-ldm", "--tome-steps=2", "--tome-rounds=6", "--tome-ratios=0.5",
        "--tome-clock=wall", "--tome-baselines=baselines", "-p", "no:randomly",
    )  # fmt: skip
    missing = pytester.runpytest(*run)
    missing.assert_outcomes(failed=1)
    line = next(l for l in missing.outlines if "create it with: pytest" in l)
    command = shlex.split(line.split("create it with: ", 1)[1])
    assert command[0] == "pytest" and "--tome-clock=wall" in command, command
    saved = pytester.runpytest(*command[1:])
    saved.assert_outcomes(passed=1)
    again = pytester.runpytest(*run, "--tome-inconclusive=warn", "--tome-tol-speed=90%")
    text = again.stdout.str()
    assert "different settings" not in text and "no baseline" not in text, text
    again.assert_outcomes(passed=1)
