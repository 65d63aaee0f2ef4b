"""Options as a user's sweep tried them: the command line and the ini file agree, values out
of range and empty values are usage errors that name the value and what is valid."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import pytest

from pytest_tome.parsers import MAX_RATIOS, parse_ratios
from pytest_tome.session import TomeSession
from pytest_tome.settings import TomeSettings, resolve_device

SETTINGS_TEST = """
def test_settings(tome_settings):
    print("SETTINGS", tome_settings.threads, tome_settings.clock, tome_settings.ratios)
"""


def _settings_line(result: pytest.RunResult) -> str:
    line = next(line for line in result.outlines if "SETTINGS" in line)
    return line[line.index("SETTINGS") :]


@pytest.mark.parametrize("where", ["cli", "ini"])
def test_threads_auto_is_the_same_on_the_command_line_and_in_an_ini_file(
    pytester: pytest.Pytester, where: str
) -> None:
    pytester.makepyfile(SETTINGS_TEST)
    args = ["-s", "-p", "no:randomly"]
    if where == "cli":
        args += ["--tome-threads=auto", "--tome-clock=wall"]
    else:
        pytester.makeini("[pytest]\ntome_threads = auto\ntome_clock = wall\n")
    result = pytester.runpytest(*args)
    result.assert_outcomes(passed=1)
    assert _settings_line(result) == "SETTINGS None wall (0.5,)"  # the README's escape hatch
    result.stdout.fnmatch_lines(["tome: device=* threads=auto clock=wall"])

    # clock=cpu misses other threads' work: an error from either place
    if where == "cli":
        bad = pytester.runpytest("--tome-threads=auto", "--tome-clock=cpu")
    else:
        pytester.makeini("[pytest]\ntome_threads = auto\ntome_clock = cpu\n")
        bad = pytester.runpytest()
    assert bad.ret == pytest.ExitCode.USAGE_ERROR
    bad.stderr.fnmatch_lines(
        ["*--tome-clock=cpu with --tome-threads=auto:*needs --tome-threads=1*"]
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--tome-ratios=0.1:0.9:1e-9"], f"*gives 800000001 ratios*cap of {MAX_RATIOS}*"),
        (["--tome-tol-memory=10"], "*memory='10' must lie in [[]0, 100%)*e.g. 10%*"),
        (["--tome-tol-memory=100%"], "*memory='100%' must lie in [[]0, 100%)*"),
        (["--tome-tol-ssim=5"], "*ssim='5' must lie in [[]0, 1[]]*e.g. 0.02*"),
        (["--tome-rounds=10", "--tome-max-rounds=3"], "*--tome-rounds=10 is more than *=3*"),
        (["--tome-baselines="], "*empty folder path*"),
        (["--tome-report="], "*empty folder path*"),
        (["--tome-history="], "*empty file path*"),
    ],
)
def test_out_of_range_and_empty_values_are_usage_errors(
    pytester: pytest.Pytester, args: list[str], message: str
) -> None:
    pytester.makepyfile(SETTINGS_TEST)
    result = pytester.runpytest(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("tome_ratios =", "*ini key tome_ratios = '': empty ratio list*"),
        ("tome_baselines =", "*ini key tome_baselines = '': empty folder path*"),
        ("tome_tol_memory = 10", "*ini key tome_tol_memory = '10': *[[]0, 100%)*"),
        ("tome_ratios = 0.1:0.9:0.0001", "*ini key tome_ratios*gives 8001 ratios*cap of*"),
    ],
)
def test_an_ini_file_is_checked_as_the_command_line_is(
    pytester: pytest.Pytester, line: str, message: str
) -> None:
    pytester.makeini(f"[pytest]\n{line}\n")
    pytester.makepyfile(SETTINGS_TEST)
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])


def test_pyproject_takes_a_toml_list_of_ratios(pytester: pytest.Pytester) -> None:
    pytester.makepyprojecttoml(
        '[tool.pytest.ini_options]\ntome_ratios = [0.3, 0.5]\ntome_models = ["tiny-ddpm"]\n'
    )
    pytester.makepyfile(SETTINGS_TEST)
    result = pytester.runpytest("-s", "-p", "no:randomly")
    result.assert_outcomes(passed=1)
    assert _settings_line(result) == "SETTINGS 1 auto (0.3, 0.5)"


def test_tome_generate_and_tome_gate_without_a_ratio_say_what_they_need(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        "def test_generate(tome_generate):\n    tome_generate()\n\n"
        "def test_gate(tome_gate):\n    tome_gate()\n"
    )
    result = pytester.runpytest("--tome-models=tiny-ldm", "-p", "no:randomly")
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(
        [
            "*tome_generate() needs a merge ratio in [[]0, 1): tome_generate(0.5), or*",
            "*tome_gate() needs a merge ratio in [[]0, 1): tome_gate(0.5), or*",
        ],
    )
    assert "TypeError" not in result.stdout.str()


def test_a_ratio_list_longer_than_the_cap_is_refused() -> None:
    many = ",".join(f"{i / 1000:g}" for i in range(MAX_RATIOS + 1))
    with pytest.raises(argparse.ArgumentTypeError, match=f"{MAX_RATIOS + 1} ratios given"):
        parse_ratios(many)
    assert len(parse_ratios(f"0:{(MAX_RATIOS - 1) / 1000}:0.001")) == MAX_RATIOS
    for step in ("1e-30", "1e-300", "5e-324"):  # counted exactly, never a decimal error
        with pytest.raises(
            argparse.ArgumentTypeError, match=r"gives about [1-9]\.\de\+\d\d+ ratios"
        ):
            parse_ratios(f"0:0.9:{step}")


def test_the_controller_shows_the_device_its_workers_resolved() -> None:
    """Under xdist only workers resolve `auto`; the summary and report.json show theirs."""
    worker = TomeSession(TomeSettings(device="auto"), worker_index=0)
    worker.settings = TomeSettings(device="cpu")
    worker.device_resolved = True
    controller = TomeSession(TomeSettings(device="auto"))
    controller.merge_workeroutput(worker.to_workeroutput())
    controller.merge_workeroutput(worker.to_workeroutput())
    assert controller.settings.device == "cpu"
    assert controller.settings.describe()["device"] == "cpu"


GATE_TEST = """
def test_gate(tome_gate, tome_ratio):
    tome_gate(tome_ratio)
"""


def test_xdist_shows_the_device_a_plain_run_shows(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The header shows the device as asked, the summary and report.json the one used, as a
    plain run does (there the device is resolved in-process by `resolve_device`); under
    xdist only the workers resolve `auto`, and the controller shows what they used."""
    root = str(Path(__file__).parents[1])  # the workers import this checkout's pytest_tome
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [root, os.getenv("PYTHONPATH")])))
    pytester.makepyfile(test_user_gate=GATE_TEST)
    result = pytester.runpytest(
        "--tome-models=tiny-ldm", "--tome-steps=2", "--tome-rounds=2", "--tome-max-rounds=2",
        "--tome-warmup=0", "--tome-inconclusive=warn", "--tome-save-baselines",
        "--tome-report=report", "-p", "no:randomly", "-p", "no:cacheprovider", "-n", "1",
    )  # fmt: skip
    result.assert_outcomes(passed=1)
    device = resolve_device("auto")
    report = json.loads((pytester.path / "report" / "report.json").read_text())
    assert report["settings"]["device"] == device
    lines = [line for line in result.outlines if line.startswith("tome: device=")]
    assert len(lines) == 2  # the header, then the summary's settings
    assert lines[0].startswith("tome: device=auto ")  # as asked: resolving imports torch
    assert lines[1].startswith(f"tome: device={device} ")


def test_unset_options_survive_the_trip_to_a_looponfail_subprocess(
    pytester: pytest.Pytester,
) -> None:
    """pytest-xdist's --looponfail sends `vars(config.option)` through execnet."""
    import execnet  # pytest-xdist brings it (the test extra)

    config = pytester.parseconfig()
    tome = {k: v for k, v in vars(config.option).items() if k.startswith("tome_")}
    assert execnet.loads(execnet.dumps(tome)) == tome
