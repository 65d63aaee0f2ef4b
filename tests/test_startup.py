"""Zero cost until used: a suite that never touches the plugin pays nothing for it."""

from __future__ import annotations

import json
import sys

import pytest

HEAVY = ("torch", "diffusers", "transformers", "scipy", "matplotlib", "skimage", "numpy")

# Written at session finish by a conftest, so it sees everything imported at start-up,
# collection and the run itself. A subprocess: this process has imported all of them already.
PROBE = """
import json, sys

def pytest_sessionfinish(session):
    heavy = [m for m in {heavy!r} if m in sys.modules]
    with open("imported.json", "w") as f:
        json.dump(heavy, f)
"""

PLAIN_TEST = "def test_plain():\n    assert 1 + 1 == 2\n"


def _heavy_imports(pytester: pytest.Pytester, *args: str) -> list[str]:
    pytester.makeconftest(PROBE.format(heavy=HEAVY))
    result = pytester.runpytest_subprocess("-p", "no:randomly", *args)
    assert result.ret == pytest.ExitCode.OK, result.stdout.str() + result.stderr.str()
    return json.loads((pytester.path / "imported.json").read_text())


def test_a_suite_without_tome_imports_nothing_heavy(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(PLAIN_TEST)
    assert _heavy_imports(pytester) == []


def test_options_alone_import_nothing_heavy(pytester: pytest.Pytester) -> None:
    """Options are validated at start-up without torch, even a device that needs it."""
    pytester.makepyfile(PLAIN_TEST)
    imported = _heavy_imports(
        pytester, "--tome-device=cuda", "--tome-ratios=0.3,0.5", "--tome-models=arch:sd15-512"
    )
    assert imported == []


def test_the_probe_sees_an_import(pytester: pytest.Pytester) -> None:
    """The guard above can fail: the same probe reports torch once a test imports it."""
    pytester.makepyfile("def test_uses_torch():\n    import torch\n    assert torch.ones(1)\n")
    assert "torch" in _heavy_imports(pytester)


def test_the_header_is_one_short_line(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(PLAIN_TEST)
    result = pytester.runpytest("-p", "no:randomly", "--tome-ratios=0.3,0.5")
    tome_lines = [line for line in result.outlines if line.startswith("tome:")]
    assert tome_lines == ["tome: device=auto dtype=float32 ratios=0.3,0.5"]
    assert "pytest-tome" not in result.stdout.str()  # no summary section either
    result.assert_outcomes(passed=1)


@pytest.mark.skipif(sys.platform == "darwin", reason="MPS may really be there on a Mac")
def test_a_missing_device_is_a_usage_error_once_a_tome_test_is_collected(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        PLAIN_TEST + "\ndef test_tome(tome_settings):\n    assert tome_settings.device\n"
    )
    result = pytester.runpytest("--tome-device=mps")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: --tome-device=mps: MPS is not available here*"])
    assert "Traceback" not in result.stdout.str() + result.stderr.str()


@pytest.mark.skipif(sys.platform == "darwin", reason="MPS may really be there on a Mac")
def test_a_missing_device_fails_the_first_fixture_use_cleanly(pytester: pytest.Pytester) -> None:
    """Where collection cannot see the fixture (requested at run time, or an xdist worker),
    the fixture fails each test that needs it with the one-line reason."""
    pytester.makepyfile(
        PLAIN_TEST + "\ndef test_dynamic(request):\n    request.getfixturevalue('tome_settings')\n"
    )
    result = pytester.runpytest("--tome-device=mps", "-p", "no:randomly")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*usage error: --tome-device=mps: MPS is not available here*"])
    for noise in ("Traceback", "settings.py", "During handling"):
        assert noise not in result.stdout.str()


def test_pytest_html_is_left_alone_until_a_report_is_asked_for(pytester: pytest.Pytester) -> None:
    """Without pytest-html (or without --html) the plugin imports none of its HTML code."""
    import importlib.util

    pytester.makepyfile(PLAIN_TEST)
    pytester.makeconftest(PROBE.format(heavy=("pytest_html", "pytest_tome.report.html")))
    installed = ["pytest_html"] if importlib.util.find_spec("pytest_html") else []
    absent = ("-p", "no:html", "-p", "no:html_fixtures")  # both of pytest-html's entry points
    for args, expected in ((absent, []), ((), installed)):
        result = pytester.runpytest_subprocess("-p", "no:randomly", *args)
        assert result.ret == pytest.ExitCode.OK, result.stdout.str()
        assert json.loads((pytester.path / "imported.json").read_text()) == expected, args
