"""The pure parts of the CI outputs on made-up results: JUnit properties, pytest-html blocks,
history lines (append, read, corrupt lines), the trend figure and line, bisect's exit."""

from __future__ import annotations

import json
import math
import os
import subprocess
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest
from matplotlib.image import imread

from pytest_tome.gate.results import FAIL, INCONCLUSIVE, PASS, ImageThumb, RatioResult
from pytest_tome.report import bisect, history, html, properties, trend

SETTINGS = {"device": "cpu", "dtype": "float32", "steps": 4, "seed": 0, "images": 1,
            "threads": 1, "clock": "auto"}  # fmt: skip
VERSIONS = {"torch": "2.13.0", "diffusers": "0.42.1", "tomesd": "0.1.3", "pytest-tome": "0.1.0"}


def result(ratio: float = 0.5, speedup: float = 1.4, **kwargs: object) -> RatioResult:
    pixels = np.zeros((8, 8, 3), dtype=np.uint8)
    values: dict[str, object] = {
        "device": "cpu",
        "time_base": (1.0, 1.1, 0.9),
        "time_tome": (1.0 / speedup, 1.1 / speedup, 0.9 / speedup),
        "speedup": speedup,
        "speedup_ci": (speedup - 0.1, speedup + 0.1),
        "memory_base": 3 << 20,
        "memory_tome": 2 << 20,
        "memory_method": "peak RSS growth",
        "psnr": 40.0,
        "ssim": 0.99,
        "verdict": PASS,
        "checks": (("speedup", PASS), ("peak memory", "n/a"), ("PSNR", PASS), ("SSIM", PASS)),
        "image_base": ImageThumb.from_array(pixels),
        "image_tome": ImageThumb.from_array(pixels + 9),
    }
    values.update(kwargs)
    return RatioResult("tiny-sd", ratio, **values)  # type: ignore[arg-type]


# --- JUnit properties -------------------------------------------------------------------------


def test_properties_name_every_figure_and_each_checks_verdict() -> None:
    props = dict(properties.gate_properties(result(psnr=math.inf)))
    assert props["tome.speedup"] == "1.4" and props["tome.speedup_ci_low"] == "1.3"
    assert props["tome.time_per_image_unmerged_s"] == "1"
    assert props["tome.peak_memory_merged_bytes"] == str(2 << 20)
    assert props["tome.psnr_db"] == "inf"
    assert props["tome.verdict.speedup"] == PASS and props["tome.verdict.memory"] == "n/a"


def test_properties_leave_out_what_was_not_measured_and_keep_a_second_ratio() -> None:
    bare = RatioResult("tiny-sd", 0.9, "cpu", verdict="not mergeable")
    assert dict(properties.gate_properties(bare)).keys() == {
        "tome.model", "tome.method", "tome.ratio", "tome.device", "tome.verdict"
    }  # fmt: skip
    recorded: list[tuple[str, object]] = []
    properties.record(recorded, [result(0.3), result(0.5, speedup=1.6)])
    names = dict(recorded)
    assert names["tome.speedup"] == "1.4" and names["tome.r0.5.speedup"] == "1.6"


# --- pytest-html blocks -----------------------------------------------------------------------


def test_html_block_has_the_terminal_cells_the_checks_and_inline_images() -> None:
    from pytest_tome.report.summary import row_cells

    block = html.gate_test_html([result(verdict=FAIL, reasons=("speedup: 20% slower",))])
    for cell in row_cells(result(verdict=FAIL)):
        assert f">{cell}<" in block.replace("&amp;", "&")
    assert 'data-check="speedup"' in block and "speedup: 20% slower" in block
    assert block.count('src="data:image/png;base64,') == 2 and "font-weight:bold" in block


def test_the_results_table_cell_reads_the_properties() -> None:
    props = properties.gate_properties(result())
    assert html.cell_text(props) == "1.40x, 40.0 dB, pass"
    assert html.cell_text([("other", "x")]) == ""


def test_random_weights_are_named_beside_the_html_quality_numbers() -> None:
    noisy = result(random_weights=True)
    props = properties.gate_properties(noisy)
    assert ("tome.random_weights", "true") in props
    assert html.cell_text(props) == "1.40x, 40.0 dB (random weights), pass"
    assert "40.0 dB (random weights)" in html.images_html([noisy])
    trained = properties.gate_properties(result())
    assert not any(name == "tome.random_weights" for name, _ in trained)
    assert "(random weights)" not in html.images_html([result()])


# --- history ----------------------------------------------------------------------------------


def _record(sha: str, speedup: float, psnr: float = 40.0, **settings: object) -> dict:
    commit = {"sha": sha * 40, "subject": sha, "date": "2026-12-03T00:00:00+00:00", "dirty": False}
    return history.history_record(
        [result(0.3, speedup + 0.2, psnr=psnr + 2), result(0.5, speedup, psnr=psnr)],
        {**SETTINGS, **settings},
        VERSIONS,
        commit=commit,
        now=datetime(2026, 12, 3, tzinfo=timezone.utc),
    )


def test_append_keeps_every_earlier_byte_and_starts_a_cut_line_afresh(tmp_path: Path) -> None:
    path = tmp_path / "h.jsonl"
    path.write_bytes(b'{"half a line')
    history.append_record(path, _record("a", 1.4))
    history.append_record(path, _record("b", 1.3))
    lines = path.read_bytes().split(b"\n")
    assert lines[0] == b'{"half a line' and lines[-1] == b"" and len(lines) == 4
    read = history.read_history(path)
    assert [r["commit"]["subject"] for r in read.records] == ["a", "b"]
    assert len(read.problems) == 1 and "h.jsonl:1: not valid JSON" in read.problems[0]


@pytest.mark.parametrize(
    ("line", "why"),
    [
        ("[1, 2]", "not a pytest-tome history record"),
        ('{"format": "pytest-tome history", "results": {}}', "not a list"),
        ('{"format": "pytest-tome history", "results": [{"model": 3}]}', "not a list"),
        ('{"format": "pytest-tome history", "results": []}', "no fingerprint"),
    ],
)
def test_a_line_that_is_no_record_is_named_and_skipped(tmp_path: Path, line: str, why: str) -> None:
    path = tmp_path / "h.jsonl"
    path.write_text(json.dumps(_record("a", 1.4)) + "\n" + line + "\n\n")
    read = history.read_history(path)
    assert len(read.records) == 1
    assert len(read.problems) == 1 and ":2: " in read.problems[0] and why in read.problems[0]


def test_a_missing_file_is_an_empty_history(tmp_path: Path) -> None:
    read = history.read_history(tmp_path / "none.jsonl")
    assert read.records == [] and read.problems == []


def test_an_unwritable_history_raises_naming_it(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(history.HistoryError, match="file/h.jsonl"):
        history.append_record(tmp_path / "file" / "h.jsonl", _record("a", 1.4))


def test_the_record_holds_commit_date_fingerprint_and_figures() -> None:
    record = _record("a", 1.4)
    assert record["date"] == "2026-12-03T00:00:00+00:00" and record["commit"]["sha"] == "a" * 40
    (low, high) = record["results"][1]["speedup_ci"]
    assert record["results"][1]["speedup"] == 1.4 and low < 1.4 < high
    assert record["results"][1]["time_per_image"] == pytest.approx(1.0 / 1.4)
    assert record["results"][1]["memory"] == 2 << 20
    assert "pytest-tome" not in record["fingerprint"]["versions"]
    assert _record("a", 1.4, steps=8)["fingerprint"]["id"] != record["fingerprint"]["id"]
    json.dumps(record, allow_nan=False)  # strict JSON, as written


def test_git_commit_inside_and_outside_a_repository(tmp_path: Path) -> None:
    assert history.git_commit(tmp_path) is None
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@x", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@x", "GIT_CONFIG_GLOBAL": os.devnull, "PATH": os.environ["PATH"]}  # fmt: skip
    for args in (["init", "-q"], ["commit", "-q", "--allow-empty", "-m", "first one"]):
        subprocess.run(["git", *args], cwd=tmp_path, env=env, check=True)
    commit = history.git_commit(tmp_path)
    assert commit is not None and len(commit["sha"]) == 40 and commit["subject"] == "first one"
    assert commit["dirty"] is False


# --- trend ------------------------------------------------------------------------------------


def test_trend_figure_over_six_commits_with_a_band_and_a_fingerprint_change() -> None:
    records = [_record(c, s) for c, s in zip("abcdef", (1.40, 1.42, 1.38, 1.41, 0.9, 0.92))]
    records.insert(2, _record("b", 1.45))  # two runs of one commit
    records.append(_record("g", 1.5, steps=8))
    bands = {("tiny-sd", "tome", 0.5): trend.Band(1.4, (1.35, 1.45), 40.0, 0.2, 1.0)}
    png = trend.plot_trend(records, bands, "cpu, float32")
    assert png is not None and png.startswith(b"\x89PNG")
    import io

    height, width, _ = imread(io.BytesIO(png)).shape
    assert width > 1200 and height > 400
    assert trend.plot_trend([_record("a", 1.4) | {"results": []}], {}) is None


def test_trend_line_compares_the_last_run_with_its_fingerprints_previous_ones() -> None:
    records = [_record(c, s) for c, s in zip("abcdef", (1.40, 1.42, 1.38, 1.41, 1.39, 1.0))]
    line = trend.trend_line(records, window=3)
    assert line is not None and "run fffffff against the median of the 3 previous runs" in line
    assert "tiny-sd 0.5: 1.00x (was 1.39x, -28.1%)" in line
    other = trend.trend_line([*records, _record("g", 1.2, steps=8)])
    assert other is not None and "first with its fingerprint" in other
    assert trend.trend_line([]) is None


# --- bisect -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("results", "exitstatus", "code"),
    [
        ([result()], 0, bisect.GOOD),
        ([result(), result(verdict=FAIL)], 1, bisect.BAD),
        ([result(verdict=INCONCLUSIVE)], 0, bisect.SKIP),  # --tome-inconclusive=warn
        ([result(verdict=INCONCLUSIVE)], 1, bisect.SKIP),
        ([result(verdict=FAIL, checks=(("baseline", "missing"),))], 1, bisect.SKIP),
        ([result(verdict=FAIL, checks=(("baseline", "fingerprint mismatch"),))], 1, bisect.SKIP),
        ([result(verdict=FAIL, checks=(("baseline", "corrupt"),))], 1, bisect.SKIP),
        (  # a failed verdict outweighs another test's missing baseline
            [result(verdict=FAIL), result(verdict=FAIL, checks=(("baseline", "missing"),))],
            1,
            bisect.BAD,
        ),
        ([], pytest.ExitCode.NO_TESTS_COLLECTED, bisect.SKIP),
        ([], pytest.ExitCode.INTERRUPTED, bisect.SKIP),  # e.g. the package does not import
        ([], pytest.ExitCode.OK, bisect.SKIP),  # no gate test ran
        ([result()], pytest.ExitCode.TESTS_FAILED, bisect.BAD),  # another test failed
    ],
)
def test_bisect_status(results: list[RatioResult], exitstatus: int, code: int) -> None:
    got, why = bisect.bisect_status(results, exitstatus)
    assert got == code, why
