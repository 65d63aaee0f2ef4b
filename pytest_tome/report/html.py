"""The gate in pytest-html's report (`pytest --html=report.html`), when pytest-html is there.

Each gate test gets an HTML extra: its model's table (the terminal's columns and cells), the
verdict of every check, and its row of the image grid (unmerged, then merged), the images
inline as data: URIs so the report stands alone even without `--self-contained-html`. The
summary gets every model's whole table and image row; the results table a "ToMe" column.
The plugin registers `HtmlHooks` only when pytest-html is loaded (its hooks exist only then).
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from typing import Any

import pytest

from pytest_tome.gate.results import FAIL, INCONCLUSIVE, Headroom, ImageThumb, RatioResult
from pytest_tome.report.properties import PREFIX
from pytest_tome.report.summary import (
    COLUMNS,
    RANDOM_WEIGHTS,
    _by_model,
    _notes,
    _title,
    headroom_line,
    ratio_label,
    row_cells,
)
from pytest_tome.session import SESSION_KEY

CELL = "padding:2px 8px;border:1px solid #ccc;text-align:left;white-space:nowrap"
DISPLAY_SIDE = 128  # pixels: small thumbnails are shown at a whole multiple up to this
BAD = {FAIL: "#c0392b", INCONCLUSIVE: "#b9770e"}


def _text(value: Any) -> str:
    return html.escape(str(value))


def table_html(results: Sequence[RatioResult]) -> str:
    """The terminal's table of these rows: same columns, same cells."""
    head = "".join(f'<th style="{CELL}">{_text(c)}</th>' for c in COLUMNS)
    rows = []
    for result in results:
        cells = [f'<td style="{CELL}">{_text(c)}</td>' for c in row_cells(result)]
        colour = BAD.get(result.verdict)
        if colour:
            cells[-1] = (
                f'<td style="{CELL};color:{colour};font-weight:bold">{_text(result.verdict)}</td>'
            )
        rows.append(f'<tr data-ratio="{_text(ratio_label(result))}">{"".join(cells)}</tr>')
    return (
        '<table class="tome-table" style="border-collapse:collapse;margin:4px 0">'
        f"<thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )


def checks_html(result: RatioResult) -> str:
    """One line per check: its verdict (speedup, peak memory, PSNR, SSIM, or the baseline)."""
    if not result.checks:
        return ""
    items = "".join(
        f'<li data-check="{_text(check)}">{_text(check)}: <b>{_text(status)}</b></li>'
        for check, status in result.checks
    )
    return f'<ul class="tome-checks" style="margin:4px 0">{items}</ul>'


def _figure(thumb: ImageThumb | None, caption: str) -> str:
    if thumb is None:
        body = f'<div style="width:96px;height:96px;background:#eee">{_text("no image")}</div>'
    else:
        scale = max(1, DISPLAY_SIDE // max(thumb.width, thumb.height))  # tiny models: 32 px
        body = (
            f'<img src="data:image/png;base64,{thumb.png}" width="{thumb.width * scale}" '
            f'height="{thumb.height * scale}" alt="{_text(caption)}" '
            'style="image-rendering:pixelated">'
        )
    return (
        f'<figure style="display:inline-block;margin:0 8px 0 0;text-align:center">{body}'
        f'<figcaption style="font-size:11px">{_text(caption)}</figcaption></figure>'
    )


def images_html(results: Sequence[RatioResult]) -> str:
    """The model's row of the image grid: the unmerged image, then each result's merged one."""
    base = next((r.image_base for r in results if r.image_base is not None), None)
    if base is None and all(r.image_tome is None for r in results):
        return ""
    figures = [_figure(base, "unmerged")]
    for result in results:
        psnr = result.psnr
        quality = "" if psnr is None else ", identical" if math.isinf(psnr) else f", {psnr:.1f} dB"
        quality += RANDOM_WEIGHTS if quality and result.random_weights else ""
        figures.append(_figure(result.image_tome, f"ratio {ratio_label(result)}{quality}"))
    return f'<div class="tome-images" style="margin:6px 0">{"".join(figures)}</div>'


def model_html(model: str, results: Sequence[RatioResult], headroom: Headroom | None = None) -> str:
    """A model's block: title, table, notes and reasons, per-check verdicts, images."""
    parts = [f'<h3 class="tome-title" style="margin:6px 0">{_text(_title(model, results))}</h3>']
    if results:
        parts.append(table_html(results))
    parts.extend(f'<div class="tome-note">{_text(note)}</div>' for note in _notes(results))
    if headroom is not None:
        parts.append(f'<div class="tome-headroom"><i>{_text(headroom_line(headroom))}</i></div>')
    if len(results) == 1:
        parts.append(checks_html(results[0]))
    parts.append(images_html(results))
    return f'<div class="tome-model" data-model="{_text(model)}">{"".join(parts)}</div>'


def gate_test_html(results: Sequence[RatioResult], headroom: Sequence[Headroom] = ()) -> str:
    """A gate test's extra: its model's block with the rows this test measured."""
    blocks = [model_html(m, rows, room) for m, rows, room in _by_model(results, headroom)]
    return f'<div class="tome-extra">{"".join(blocks)}</div>'


def summary_html(results: Sequence[RatioResult], headroom: Sequence[Headroom]) -> str:
    """The run's whole gate: every model's table and image row, as the terminal shows them."""
    blocks = [model_html(m, rows, room) for m, rows, room in _by_model(results, headroom)]
    return f'<div class="tome-summary"><h2>pytest-tome</h2>{"".join(blocks)}</div>'


def cell_text(user_properties: Sequence[tuple[str, object]]) -> str:
    """The results table's ToMe cell from a report's properties: `1.47x, 50.8 dB, pass`."""
    props = {name[len(PREFIX) :]: str(v) for name, v in user_properties if name.startswith(PREFIX)}
    if "verdict" not in props:
        return ""
    parts = []
    if "speedup" in props:
        parts.append(f"{float(props['speedup']):.2f}x")
    if "psnr_db" in props:
        db = "inf dB" if props["psnr_db"] == "inf" else f"{float(props['psnr_db']):.1f} dB"
        parts.append(db + (RANDOM_WEIGHTS if props.get("random_weights") == "true" else ""))
    parts.append(props["verdict"])
    return ", ".join(parts)


class HtmlHooks:
    """pytest-html's hooks and the extras of gate tests; registered only with pytest-html."""

    def __init__(self, config: pytest.Config, results_key: pytest.StashKey) -> None:
        self.config = config
        self.results_key = results_key

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo) -> Any:
        report = yield
        results = item.stash.get(self.results_key, None)
        if report.when == "call" and results:
            from pytest_html import extras

            state = self.config.stash[SESSION_KEY]
            rooms = [state.headroom[r.model] for r in results[:1] if r.model in state.headroom]
            report.extras = [
                *getattr(report, "extras", []),
                extras.html(gate_test_html(results, rooms)),
            ]
        return report

    def pytest_html_results_table_header(self, cells: list[str]) -> None:
        cells.insert(2, '<th class="tome">ToMe</th>')

    def pytest_html_results_table_row(self, report: pytest.TestReport, cells: list[str]) -> None:
        text = cell_text(getattr(report, "user_properties", ()))
        cells.insert(2, f'<td class="col-tome">{_text(text)}</td>')

    def pytest_html_results_summary(
        self, prefix: list[str], summary: list[str], postfix: list[str], session: pytest.Session
    ) -> None:
        state = self.config.stash.get(SESSION_KEY, None)
        if state is not None and state.results:
            postfix.append(summary_html(state.sorted_results(), list(state.headroom.values())))
