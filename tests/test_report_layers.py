"""Where a model was merged, in describe() and the report: each merged layer's downsampling
from the input and its tokens in and out."""

from __future__ import annotations

import pytest

from pytest_tome.engine import tome_applied
from pytest_tome.gate.measure.merged_calls import MergedCalls
from pytest_tome.gate.measure.pipeline_calls import run_pipeline
from pytest_tome.gate.results import RatioResult
from pytest_tome.models.embedded import build_embedded
from pytest_tome.report.layers import merged_layers_lines, merged_levels_lines
from pytest_tome.report.summary import report_markdown, summary_lines

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

DOWN = "down_blocks.1.attentions.0.transformer_blocks.0"


def result(ratio: float, tokens_out: int, method: str = "tome") -> RatioResult:
    layers = ((DOWN, 2, 1024, tokens_out), ("up_blocks.1.attentions.0", 2, 1024, tokens_out))
    return RatioResult("tiny-sdxl", ratio, "cpu", method=method, merged_layers=layers)


def test_the_report_lists_each_merged_layer_with_its_downsampling_and_tokens() -> None:
    rows = [result(0.3, 717), result(0.5, 512), result(0.75, 256, "todo")]
    assert merged_layers_lines(rows) == [
        f"{DOWN} (/2): 1024 tokens -> 717 at 0.3, 512 at 0.5, 256 at todo 0.75",
        "up_blocks.1.attentions.0 (/2): 1024 tokens -> 717 at 0.3, 512 at 0.5, 256 at todo 0.75",
    ]
    markdown = report_markdown(rows, [], {})
    assert "Merged layers (2): downsampling from the input" in markdown
    assert f"- `{DOWN} (/2): 1024 tokens -> 717 at 0.3, 512 at 0.5, 256 at todo 0.75`" in markdown
    assert "Merged layers" not in report_markdown([RatioResult("m", 0.5, "cpu")], [], {})


def test_the_terminal_gives_one_line_per_level_and_token_count() -> None:
    rows = [result(0.3, 717), result(0.5, 512), result(0.75, 256, "todo")]
    deeper = RatioResult(
        "tiny-sdxl", 0.5, "cpu", merged_layers=((DOWN, 2, 1024, 512), ("mid", 4, 256, 129))
    )
    assert merged_levels_lines(rows) == [
        "merged 2 layers at /2: 1024 tokens -> 717 at 0.3, 512 at 0.5, 256 at todo 0.75"
    ]
    assert merged_levels_lines([deeper, result(0.5, 510)]) == [
        "merged 2 layers at /2: 1024 tokens -> 510-512 at 0.5",
        "merged 1 layer at /4: 256 tokens -> 129 at 0.5",
    ]
    lines = summary_lines(rows, [])
    assert lines[-1] == (
        "merged 2 layers at /2: 1024 tokens -> 717 at 0.3, 512 at 0.5, 256 at todo 0.75"
    )
    assert not any("merged" in line for line in summary_lines([RatioResult("m", 0.5, "cpu")], []))


def test_merged_layers_survive_json() -> None:
    row = result(0.5, 512)
    assert RatioResult.from_dict(row.to_dict()) == row


def test_a_merged_call_records_where_it_merged() -> None:
    pipe = build_embedded("tiny-sdxl")
    pipe.set_progress_bar_config(disable=True)
    merged = MergedCalls(pipe, 0.5, seed=0)
    with merged():
        run_pipeline(pipe, steps=1, seed=0, images=1)
    assert merged.layers == (
        (DOWN, 2, 1024, 512),
        ("up_blocks.1.attentions.0.transformer_blocks.0", 2, 1024, 512),
        ("up_blocks.1.attentions.1.transformer_blocks.0", 2, 1024, 512),
    )
    with tome_applied(pipe, 0.5, seed=0) as patch:
        assert patch.describe().splitlines()[1] == f"  {DOWN} [pytest-tome, /2]: not run yet"
        run_pipeline(pipe, steps=1, seed=0, images=1)
        assert patch.describe().splitlines()[1] == f"  {DOWN} [pytest-tome, /2]: 1024 -> 512 tokens"
