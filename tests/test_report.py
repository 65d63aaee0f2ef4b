"""The report: terminal and markdown tables, report.json, PNG figures, the job summary."""

from __future__ import annotations

import json
import math
import os
import re

import numpy as np
import pytest
from matplotlib.image import imread

from pytest_tome.gate.results import (
    FAIL,
    NOT_APPLICABLE,
    NOT_MERGEABLE,
    PASS,
    Headroom,
    ImageThumb,
    RatioResult,
)
from pytest_tome.report import files, images, plots
from pytest_tome.report import summary as report
from pytest_tome.report.files import ReportError

MiB = 2**20


def thumb(shade: int, size: int = 8) -> ImageThumb:
    pixels = np.full((size, size, 3), shade, dtype=np.uint8)
    pixels[: size // 2, :, 0] = 255 - shade
    return ImageThumb.from_array(pixels)


def timed(model: str, ratio: float, speedup: float, **kwargs: object) -> RatioResult:
    base = (1.0, 1.02, 0.98, 1.01)
    values: dict[str, object] = {
        "device": "cpu",
        "time_base": base,
        "time_tome": tuple(t / speedup for t in base),
        "speedup": speedup,
        "speedup_ci": (speedup - 0.05, speedup + 0.06),
        "verdict": PASS,
        "patched_layers": 4,
        "image_base": thumb(10),
        "image_tome": thumb(int(ratio * 200)),
    }
    values.update(kwargs)
    return RatioResult(model=model, ratio=ratio, **values)  # type: ignore[arg-type]


@pytest.fixture
def results() -> list[RatioResult]:
    """Two models, three ratios each: one identical image, one n/a quality, one unmergeable."""
    return [
        timed(
            "tiny-sd",
            0.5,
            1.52,
            psnr=24.25,
            ssim=0.8125,
            memory_base=300 * MiB,
            memory_tome=200 * MiB,
            memory_method="peak RSS",
        ),
        timed(
            "tiny-sd",
            0.3,
            1.25,
            psnr=math.inf,
            ssim=1.0,
            memory_base=300 * MiB,
            memory_tome=250 * MiB,
            memory_method="peak RSS",
        ),
        RatioResult(
            model="tiny-sd",
            ratio=0.8,
            device="cpu",
            verdict=NOT_MERGEABLE,
            reasons=("ratio 0.8 is above the sx, sy limit 0.75",),
        ),
        timed("tiny-ddpm", 0.3, 0.99, verdict=NOT_APPLICABLE, patched_layers=0),
        timed(
            "tiny-ddpm",
            0.5,
            1.01,
            verdict=FAIL,
            patched_layers=0,
            reasons=("speedup 1.01x is below the baseline 1.50x - 10%",),
        ),
        timed("tiny-ddpm", 0.8, 0.97, verdict=NOT_APPLICABLE, patched_layers=0),
    ]


@pytest.fixture
def headroom() -> list[Headroom]:
    return [Headroom("tiny-sd", 0.31, 4), Headroom("tiny-ddpm", 0.0, 0)]


SETTINGS = {
    "device": "cpu",
    "dtype": "float32",
    "steps": 2,
    "seed": 0,
    "rounds": 4,
    "ratios": [0.3, 0.5, 0.8],
    "versions": {"torch": "2.13.0"},
}


def table_rows(lines: list[str], model: str) -> list[str]:
    """The data rows of `model`'s table in summary_lines output."""
    start = next(i for i, line in enumerate(lines) if line.startswith(model))
    rows = []
    for line in lines[start + 2 :]:
        if not re.match(r"^\s*\d", line):
            break
        rows.append(line)
    return rows


# --- terminal ------------------------------------------------------------------------------


def test_summary_has_a_sorted_row_per_ratio_and_the_headroom(results, headroom):
    lines = report.summary_lines(results, headroom)
    rows = table_rows(lines, "tiny-sd")
    assert [row.split()[0] for row in rows] == ["0.3", "0.5", "0.8"]
    assert "1.52x [1.47, 1.58]" in rows[1]
    assert "200 MiB (base 300 MiB)" in rows[1]
    assert "24.2 dB" in rows[1] and "0.812" in rows[1]
    assert "patched layers take 31% of a denoiser forward: speedup bound 1.45x (Amdahl)" in lines
    assert any("ToMe patches no layer" in line for line in lines)


def test_summary_shows_inf_na_and_not_measured_as_words(results, headroom):
    lines = report.summary_lines(results, headroom)
    sd, ddpm = table_rows(lines, "tiny-sd"), table_rows(lines, "tiny-ddpm")
    assert re.search(r"\binf\b", sd[0])
    assert "not measured" in ddpm[0] and re.search(r"\bn/a\b", ddpm[0])
    assert not any(re.search(r"\b0 MiB", line) for line in lines)


def test_summary_marks_unmergeable_ratios_and_lists_reasons(results, headroom):
    lines = report.summary_lines(results, headroom)
    row = table_rows(lines, "tiny-sd")[2]
    assert row.split()[0] == "0.8" and row.endswith("not mergeable")
    assert "x [" not in row
    assert "  ratio 0.5: speedup 1.01x is below the baseline 1.50x - 10%" in lines


def test_summary_columns_are_aligned(results, headroom):
    lines = report.summary_lines(results, headroom)
    start = lines.index(next(line for line in lines if line.startswith("tiny-sd")))
    header, *rows = lines[start + 1 : start + 5]
    column = header.index("verdict")
    assert all(row[column - 2 : column] == "  " and row[column] != " " for row in rows)


def test_summary_of_nothing_is_empty():
    assert report.summary_lines([], []) == []


@pytest.mark.parametrize(
    ("share", "expected"),
    [(0.0085, "0.85%"), (0.05, "5.0%"), (0.31, "31%"), (0.0, "0%")],
)
def test_share_keeps_small_shares_readable(share, expected):
    assert report.format_share(share) == expected


# --- markdown ------------------------------------------------------------------------------


def test_markdown_has_a_table_row_per_ratio(results, headroom):
    text = report.report_markdown(results, headroom, SETTINGS)
    rows = [line for line in text.splitlines() if re.match(r"^\| \d", line)]
    assert len(rows) == len(results)
    assert "| 0.8 | - | - | - | - | - | not mergeable |" in rows
    assert any(row.endswith("| **fail** |") for row in rows)
    assert "_patched layers take 31% of a denoiser forward: speedup bound 1.45x (Amdahl)_" in text
    assert "2 model(s), 6 ratio result(s): 1 fail, 2 pass, 2 n/a, 1 not mergeable." in text


def test_markdown_links_figures_only_when_given(results, headroom):
    plain = report.report_markdown(results, headroom, SETTINGS)
    linked = report.report_markdown(results, headroom, SETTINGS, figures=[("Speed", "speed.png")])
    assert "](" not in plain
    assert "![Speed](speed.png)" in linked


# --- files ---------------------------------------------------------------------------------


def test_write_report_writes_every_file(tmp_path, results, headroom, monkeypatch):
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    paths = files.write_report(tmp_path / "out", results, headroom, SETTINGS)
    names = sorted(p.name for p in paths)
    assert names == ["images.png", "quality.png", "report.json", "report.md", "speed.png"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == names  # no temp files left
    for png in (p for p in paths if p.suffix == ".png"):
        assert imread(png).ndim == 3
    md = (tmp_path / "out" / "report.md").read_text(encoding="utf-8")
    assert all(f"]({name})" in md for name in names if name.endswith(".png"))


def test_report_json_round_trips_to_records(tmp_path, results, headroom):
    path = files.write_atomic(
        tmp_path / "report.json", files.report_json(results, headroom, SETTINGS).encode()
    )
    text = path.read_text(encoding="utf-8")
    json.loads(text, parse_constant=lambda name: pytest.fail(f"non-strict JSON: {name}"))
    loaded, rooms, settings = files.load_report(tmp_path / "report.json")
    without_images = [
        RatioResult.from_dict({**r.to_dict(), "image_base": None, "image_tome": None})
        for r in results
    ]
    assert loaded == without_images
    assert loaded[1].psnr == math.inf
    assert rooms == headroom
    assert settings == SETTINGS


def test_write_report_without_results_writes_no_figures(tmp_path):
    (tmp_path / "speed.png").write_bytes(b"an earlier run's figure")
    paths = files.write_report(tmp_path, [], [], {})
    assert not (tmp_path / "speed.png").exists()
    assert sorted(p.name for p in paths) == ["report.json", "report.md"]
    assert "no results" in (tmp_path / "report.md").read_text(encoding="utf-8")


def test_step_summary_is_appended_when_github_sets_it(tmp_path, results, headroom, monkeypatch):
    summary = tmp_path / "summary.md"
    summary.write_text("earlier step\n", encoding="utf-8")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    files.write_report(tmp_path / "out", results, headroom, SETTINGS)
    text = summary.read_text(encoding="utf-8")
    assert text.startswith("earlier step\n# pytest-tome report")
    assert "| 0.8 | - | - | - | - | - | not mergeable |" in text
    assert ".png)" not in text  # the job summary cannot reach the report folder


def test_step_summary_is_left_alone_when_unset(tmp_path, monkeypatch):
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    assert files.append_step_summary("# x\n") is None
    assert files.append_step_summary("# x", str(tmp_path / "s.md")) == tmp_path / "s.md"
    assert (tmp_path / "s.md").read_text(encoding="utf-8") == "# x\n"


def test_a_file_in_the_way_is_named_in_the_error(tmp_path, results, headroom):
    blocker = tmp_path / "report"
    blocker.write_text("not a folder", encoding="utf-8")
    with pytest.raises(ReportError, match=re.escape(repr(str(blocker))) + ".*not a folder"):
        files.write_report(blocker, results, headroom, SETTINGS)
    with pytest.raises(ReportError, match=re.escape(repr(str(blocker / "sub")))):
        files.write_report(blocker / "sub", results, headroom, SETTINGS)


def test_a_failed_write_leaves_neither_temp_file_nor_half_file(tmp_path, monkeypatch):
    target = tmp_path / "report.json"
    target.write_text("old", encoding="utf-8")

    def refuse(src: object, dst: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(ReportError, match="report.json.*No space left"):
        files.write_atomic(target, b"new")
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]
    assert target.read_text(encoding="utf-8") == "old"


# --- figures -------------------------------------------------------------------------------


def test_figures_are_deterministic(results, headroom):
    assert plots.plot_speed(results, headroom) == plots.plot_speed(results, headroom)


def test_figures_are_skipped_when_there_is_nothing_to_draw(results):
    no_quality = [r for r in results if r.model == "tiny-ddpm"]
    assert plots.plot_quality(no_quality) is None
    untimed = [RatioResult(model="m", ratio=0.5, device="cpu", verdict=NOT_MERGEABLE)]
    assert plots.plot_speed(untimed, []) is None
    assert images.plot_images(untimed) is None


def test_image_grid_has_a_row_per_ratio(tmp_path, results):
    ratios = sorted({r.ratio for r in results} - {0.0})
    assert len(ratios) >= 2
    one = images.plot_images([r for r in results if r.ratio in (0.0, ratios[0])])
    two = images.plot_images(results)
    (tmp_path / "one.png").write_bytes(one)
    (tmp_path / "two.png").write_bytes(two)
    one_h, two_h = imread(tmp_path / "one.png").shape[0], imread(tmp_path / "two.png").shape[0]
    assert two_h > one_h * 1.3


def test_a_thumbnail_of_the_wrong_size_is_refused():
    good = thumb(10, size=4)
    with pytest.raises(ValueError, match=r"is 4x4, expected 2x2"):
        images._pixels(ImageThumb(2, 2, good.png))
    with pytest.raises(ValueError, match="not a base64 PNG"):
        images._pixels(ImageThumb(2, 2, "not png"))


def test_thumbnails_are_downscaled_png_that_round_trip():
    rng = np.random.default_rng(0)
    big = rng.random((512, 384, 3), dtype=np.float32)
    small = ImageThumb.from_array(big)
    assert (small.height, small.width) == (128, 96)
    assert len(small.png) < 60_000  # vs. 590k ints as a pixel list
    exact = (rng.random((16, 16, 3)) * 255).astype(np.uint8)
    assert np.array_equal(ImageThumb.from_array(exact).to_array(), exact)  # lossless below max
    again = RatioResult.from_dict(timed("m", 0.5, 1.5, image_base=small).to_dict()).image_base
    assert again == small


def test_subtitle_names_the_settings():
    assert plots.subtitle(SETTINGS) == "cpu, float32, 2 steps, 4 rounds, seed 0"
    assert plots.subtitle({"images": 1}) == "1 image"


def test_quality_of_random_weights_is_marked_in_every_table_cell() -> None:
    noise = timed("tiny-sd", 0.5, 1.5, psnr=55.0, ssim=0.999, random_weights=True)
    faces = timed("faces-ddpm", 0.5, 1.0, psnr=30.7, ssim=0.97)
    noise_cells, face_cells = report.row_cells(noise), report.row_cells(faces)
    psnr, ssim = report.COLUMNS.index("PSNR"), report.COLUMNS.index("SSIM")
    assert noise_cells[psnr] == "55.0 dB (random weights)"
    assert noise_cells[ssim] == "0.999 (random weights)"
    assert (face_cells[psnr], face_cells[ssim]) == ("30.7 dB", "0.970")
    markdown = report.report_markdown([noise, faces], [], {})
    assert "55.0 dB (random weights)" in markdown and "30.7 dB |" in markdown


def test_the_quality_figure_gets_the_thesis_trend_of_trained_models_only() -> None:
    rows = [
        timed("faces-ddpm", 0.1, 1.0, psnr=37.6, ssim=0.995),
        timed("faces-ddpm", 0.7, 1.0, psnr=30.5, ssim=0.972),
        timed("tiny-sd", 0.1, 1.0, psnr=70.0, ssim=1.0, random_weights=True),
        timed("tiny-sd", 0.7, 1.0, psnr=50.0, ssim=0.999, random_weights=True),
    ]
    markdown = report.report_markdown(rows, [], {}, figures=[("PSNR and SSIM", "quality.png")])
    assert "exponentially" in markdown
    assert "- faces-ddpm: PSNR 37.6 dB at ratio 0.1 to 30.5 dB at 0.7; SSIM 0.995 to 0.972" in (
        markdown
    )
    assert "- tiny-sd:" not in markdown
    no_figure = report.report_markdown(rows, [], {})
    assert "exponentially" not in no_figure
