"""Where a model was merged: each merged layer, its downsampling from the input, and the
tokens it got and passed to attention at each ratio, for the report."""

from __future__ import annotations

from collections.abc import Sequence

from pytest_tome.gate.results import RatioResult


def merged_layers_lines(rows: Sequence[RatioResult]) -> list[str]:
    """One line per merged layer: `name (/2): 1024 tokens -> 717 at 0.3, 512 at 0.5`."""
    seen: dict[tuple[str, int, int], list[str]] = {}
    for result in rows:
        label = f"{result.ratio:g}"
        if result.method != "tome":
            label = f"{result.method} {label}"
        for name, downsample, tokens_in, tokens_out in result.merged_layers:
            seen.setdefault((name, downsample, tokens_in), []).append(f"{tokens_out} at {label}")
    return [
        f"{name} (/{downsample}): {tokens_in} tokens -> {', '.join(outs)}"
        for (name, downsample, tokens_in), outs in seen.items()
    ]


def merged_layers_markdown(rows: Sequence[RatioResult]) -> list[str]:
    """A folded list of `merged_layers_lines` (nothing when no row recorded its layers)."""
    lines = merged_layers_lines(rows)
    if not lines:
        return []
    return [
        (
            f"<details><summary>Merged layers ({len(lines)}): downsampling from the input, "
            "tokens in -> tokens attention saw (keys/values for ToDo)</summary>"
        ),
        "",
        *(f"- `{line}`" for line in lines),
        "",
        "</details>",
        "",
    ]
