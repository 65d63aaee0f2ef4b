"""Where CI looks, end to end on tiny-ldm: JUnit XML properties (with and without xdist), the
history file and its trend, pytest-html's report opened in headless Chromium, and
`--tome-bisect`'s exit status for what cannot tell a good commit from a bad one.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path

import pytest

from pytest_tome.report.summary import COLUMNS

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

GATE_TEST = """
def test_gate(tome_gate, tome_ratio):
    tome_gate(tome_ratio)
"""
# Two short rounds of 2-step tiny-ldm calls: seconds per test; figures, not verdicts, matter.
QUICK = (
    "--tome-models=tiny-ldm",
    "--tome-steps=2",
    "--tome-rounds=2",
    "--tome-max-rounds=2",
    "--tome-warmup=0",
    "--tome-ratios=0.3,0.5",
    "--tome-baselines=baselines",
    "-p",
    "no:randomly",
    "-p",
    "no:cacheprovider",
)
BROWSERS = ("chromium", "chromium-browser", "google-chrome")
# The only way past the browser check: set on purpose, never implied by a missing browser.
NO_BROWSER = "TOME_SKIP_BROWSER"
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "wbr"}


def _properties(path: Path) -> dict[str, dict[str, str]]:
    """testcase name -> its properties, from a JUnit XML file."""
    root = ET.parse(path).getroot()
    return {
        case.get("name"): {p.get("name"): p.get("value") for p in case.iter("property")}
        for case in root.iter("testcase")
    }


def _check_properties(cases: dict[str, dict[str, str]]) -> None:
    assert sorted(cases) == ["test_gate[tiny-ldm-r0.3]", "test_gate[tiny-ldm-r0.5]"]
    for name, props in cases.items():
        assert props["tome.model"] == "tiny-ldm" and props["tome.method"] == "tome"
        assert props["tome.ratio"] == name.split("-r")[1].rstrip("]")
        speedup, low, high = (float(props[f"tome.speedup{s}"]) for s in ("", "_ci_low", "_ci_high"))
        assert 0 < low <= speedup <= high
        assert float(props["tome.time_per_image_unmerged_s"]) > 0
        assert float(props["tome.time_per_image_merged_s"]) > 0
        assert int(props["tome.peak_memory_merged_bytes"]) >= 0
        assert float(props["tome.psnr_db"]) > 20 and 0 < float(props["tome.ssim"]) <= 1
        assert props["tome.verdict"] == "new"
        for check in ("speedup", "memory", "psnr", "ssim"):
            assert props[f"tome.verdict.{check}"] == "new", check


def _history(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_properties_history_and_trend_in_one_process(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    job_summary = pytester.path / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(job_summary))
    pytester.makepyfile(test_user_gate=GATE_TEST)
    history = pytester.path / "history.jsonl"
    history.write_text('{"format": "pytest-tome history", "results": [tr\n')  # a cut-off line
    result = pytester.runpytest(
        *QUICK,
        "--tome-save-baselines",
        "--junitxml=out.xml",
        f"--tome-history={history.name}",
        "--tome-report=report",
    )
    result.assert_outcomes(passed=2)
    _check_properties(_properties(pytester.path / "out.xml"))
    # The corrupt line is named and kept; this run's line follows it; the trend is drawn.
    result.stdout.fnmatch_lines(["*WARNING: --tome-history: *history.jsonl:1: not valid JSON*"])
    lines = history.read_text().splitlines()
    assert len(lines) == 2 and lines[0].endswith("[tr")
    record = json.loads(lines[1])
    assert record["fingerprint"]["steps"] == 2 and len(record["fingerprint"]["id"]) == 12
    assert sorted(e["ratio"] for e in record["results"]) == [0.3, 0.5]
    assert all(e["speedup"] > 0 and e["psnr"] > 20 for e in record["results"])
    assert (pytester.path / "report" / "trend.png").read_bytes().startswith(b"\x89PNG")
    assert "ToMe trend" in (pytester.path / "report" / "report.md").read_text()
    assert job_summary.read_text().splitlines()[-1].startswith("**ToMe trend**: run ")


def test_a_history_path_that_is_a_folder_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_plain():\n    pass\n")
    (pytester.path / "runs").mkdir()
    result = pytester.runpytest("--tome-history=runs")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--tome-history: *runs is a folder*"])


def _browser() -> str:
    found = next((shutil.which(name) for name in BROWSERS if shutil.which(name)), None)
    if found is None:
        if os.environ.get(NO_BROWSER):
            pytest.skip(f"{NO_BROWSER} is set: the HTML report is not opened in a browser")
        pytest.fail(
            "no Chromium to open the HTML report in (apt-get install -y chromium, as .ci/run "
            f"does); set {NO_BROWSER}=1 to leave this check out on purpose",
            pytrace=False,
        )
    return found


def open_in_browser(page: Path, screenshot: Path | None = None) -> str:
    """The page's DOM after its scripts ran, from headless Chromium (and a screenshot)."""
    command = [_browser(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"]
    command += ["--virtual-time-budget=5000", "--window-size=1280,1600"]
    url = page.as_uri() + "?collapsed="  # pytest-html: no row collapsed, details shown
    if screenshot is not None:
        shot = subprocess.run(
            [*command, f"--screenshot={screenshot}", url],
            capture_output=True,
            timeout=120,
            check=False,
        )
        assert screenshot.exists(), shot.stderr.decode(errors="replace")[-2000:]
    dom = subprocess.run(
        [*command, "--dump-dom", url], capture_output=True, timeout=120, check=False
    )
    assert dom.returncode == 0, dom.stderr.decode(errors="replace")[-2000:]
    return dom.stdout.decode()


class TomeTables(HTMLParser):
    """The tome tables and images of a DOM, each noted with where it lies."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []  # classes and ids of the open elements
        self.tables: list[dict] = []  # {"where": ..., "rows": [[cell, ...], ...]}
        self.images: list[tuple[str, str]] = []  # (where, src)
        self.cell: list[str] | None = None

    def _where(self) -> str:
        return "summary" if any("tome-summary" in marks for marks in self.stack) else "test"

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attr = dict(attrs)
        marks = f"{attr.get('class') or ''} #{attr.get('id') or ''}".split()
        if tag == "img" and any(m.startswith("tome-") for m in self.stack):
            self.images.append((self._where(), attr.get("src") or ""))
        if tag in VOID:
            return
        self.stack.append(" ".join(marks))
        if tag == "table" and "tome-table" in marks:
            self.tables.append({"where": self._where(), "rows": []})
        elif tag == "tr" and self._in_table():
            self.tables[-1]["rows"].append([])
        elif tag in ("td", "th") and self._in_table():
            self.cell = []

    def handle_data(self, data: str) -> None:
        if self.cell is not None:
            self.cell.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self.cell is not None:
            self.tables[-1]["rows"][-1].append("".join(self.cell).strip())
            self.cell = None
        if tag not in VOID and self.stack:
            self.stack.pop()

    def _in_table(self) -> bool:
        return any("tome-table" in marks for marks in self.stack)


@pytest.mark.slow
def test_xdist_run_keeps_properties_writes_one_history_line_and_an_html_report(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(test_user_gate=GATE_TEST)
    result = pytester.runpytest_subprocess(
        *QUICK,
        "--tome-save-baselines",
        "-n",
        "2",
        "--junitxml=out.xml",
        "--tome-history=history.jsonl",
        "--html=html/report.html",  # not --self-contained-html: the images are inline anyway
    )
    result.assert_outcomes(passed=2)
    _check_properties(_properties(pytester.path / "out.xml"))
    (record,) = _history(pytester.path / "history.jsonl")  # the controller wrote it, once
    assert len(record["results"]) == 2

    terminal = [line for line in result.outlines if line.lstrip().startswith(("0.3 ", "0.5 "))]
    dom = TomeTables()
    dom.feed(open_in_browser(pytester.path / "html" / "report.html"))
    tests = [t for t in dom.tables if t["where"] == "test"]
    summary = [t for t in dom.tables if t["where"] == "summary"]
    assert len(tests) == 2 and len(summary) == 1
    for table in [*tests, *summary]:
        assert table["rows"][0] == list(COLUMNS)
    # The summary's rows are the terminal's, cell for cell (the terminal pads them).
    assert [" ".join(row) for row in summary[0]["rows"][1:]] == [
        " ".join(line.split()) for line in terminal
    ]
    assert sorted(t["rows"][1][0] for t in tests) == ["0.3", "0.5"]
    # Unmerged + merged per test, unmerged + 2 ratios in the summary; every one inline.
    assert [where for where, _ in dom.images].count("test") == 4
    assert [where for where, _ in dom.images].count("summary") == 3
    assert all(src.startswith("data:image/png;base64,") for _, src in dom.images)
    assert not list((pytester.path / "html" / "assets").glob("*.png"))


def test_bisect_exits_125_for_a_missing_baseline_and_a_fingerprint_mismatch(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(test_user_gate=GATE_TEST)
    one = ("--tome-ratios=0.5", "--tome-bisect")
    missing = pytester.runpytest(*QUICK, *one)
    assert missing.ret == 125
    missing.stdout.fnmatch_lines(["*--tome-bisect: exit 125, skip*baseline missing*"])
    pytester.runpytest(*QUICK, "--tome-ratios=0.5", "--tome-save-baselines").assert_outcomes(
        passed=1
    )
    other = pytester.runpytest(*QUICK, *one, "--tome-steps=3")
    assert other.ret == 125
    other.stdout.fnmatch_lines(["*skip*baseline fingerprint mismatch*"])
    no_tests = pytester.runpytest(*QUICK, *one, "-k", "nothing_matches")
    assert no_tests.ret == 125
