"""The timing policy's options, and bad input found before any test measures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pytest_tome.settings import SettingsError, check_baselines_folder

USER_TEST = """
def test_one(tome_settings):
    assert tome_settings.threads in (1, 3, None)
"""


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--tome-threads=0"], "*threads 0 is too small; expected >= 1*"),
        (["--tome-threads=some"], "*threads 'some' is not a whole number*"),
        (["--tome-max-rounds=1"], "*max rounds 1 is too small; expected >= 2*"),
        (["--tome-inconclusive=maybe"], "*inconclusive='maybe' is not one of fail, warn*"),
        (["--tome-clock=sundial"], "*clock 'sundial' is not one of auto, wall, cpu*"),
        (["--tome-clock=cpu", "--tome-threads=2"], "*--tome-clock=cpu*needs --tome-threads=1*"),
        (["--tome-tol-speed=200%"], "*speed='200%' must lie in [[]0, 100%)*how much longer the merged call may take*"),
    ],
)
def test_bad_timing_options_are_usage_errors(
    pytester: pytest.Pytester, args: list[str], message: str
) -> None:
    pytester.makepyfile(USER_TEST)
    result = pytester.runpytest(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])


def test_ini_keys_set_the_policy_and_the_command_line_wins(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\ntome_threads = 3\ntome_inconclusive = warn\n")
    pytester.makepyfile(
        USER_TEST
        + """
def test_policy(tome_settings):
    assert (tome_settings.threads, tome_settings.inconclusive) == (3, "warn")
    assert (tome_settings.max_rounds, tome_settings.clock) == (20, "auto")
"""
    )
    pytester.runpytest("-p", "no:randomly").assert_outcomes(passed=2)
    auto = pytester.runpytest("-p", "no:randomly", "--tome-threads=auto", "-k", "one")
    auto.assert_outcomes(passed=1)


def test_a_baselines_file_is_refused_for_any_run(tmp_path: Path) -> None:
    path = tmp_path / "baselines"
    path.write_text("x")
    for saving in (False, True):
        with pytest.raises(SettingsError, match="is a file; expected a folder"):
            check_baselines_folder(path, saving=saving)


def test_a_read_only_folder_matters_only_to_a_saving_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "baselines" / "new"
    writable = os.access
    monkeypatch.setattr(
        os, "access", lambda p, mode: False if Path(p) == tmp_path else writable(p, mode)
    )
    check_baselines_folder(folder, saving=False)  # comparing reads only: fine
    with pytest.raises(SettingsError, match=f"{tmp_path} is read-only; --tome-save-baselines"):
        check_baselines_folder(folder, saving=True)


GENERATE_TEST = """
import re
import pytest

@pytest.mark.parametrize("call, message", [
    (lambda g: g(ratio="0.5"), "ratio='0.5' is a str; pass a number"),
    (lambda g: g(0.5, sharpness=2), "unknown argument(s) sharpness; valid: ratio, method, sx"),
    (lambda g: g(0.5, sx=0), "sx must be"),
])
def test_bad_arguments(tome_generate, call, message):
    with pytest.raises(pytest.fail.Exception, match=re.escape(message)):
        call(tome_generate)
"""


def test_tome_generate_names_a_bad_argument(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(GENERATE_TEST)
    result = pytester.runpytest("--tome-models=tiny-ldm", "-p", "no:randomly")
    result.assert_outcomes(passed=3)
