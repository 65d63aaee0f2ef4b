"""Where a model was merged: each merged layer, its downsampling from the input, and the
tokens it got and passed to attention at each ratio, for the report and the terminal."""

from __future__ import annotations

from collections.abc import Sequence

from pytest_tome.gate.results import RatioResult


def _label(result: RatioResult) -> str:
    return f"{result.ratio:g}" if result.method == "tome" else f"{result.method} {result.ratio:g}"


def merged_layers_lines(rows: Sequence[RatioResult]) -> list[str]:
    """One line per merged layer: `name (/2): 1024 tokens -> 717 at 0.3, 512 at 0.5`."""
    seen: dict[tuple[str, int, int], list[str]] = {}
    for result in rows:
        for name, downsample, tokens_in, tokens_out in result.merged_layers:
            key = (name, downsample, tokens_in)
            seen.setdefault(key, []).append(f"{tokens_out} at {_label(result)}")
    return [
        f"{name} (/{downsample}): {tokens_in} tokens -> {', '.join(outs)}"
        for (name, downsample, tokens_in), outs in seen.items()
    ]


def merged_levels_lines(rows: Sequence[RatioResult]) -> list[str]:
    """The terminal's short form, one line per level and token count of the merged layers:
    `merged 3 layers at /2: 1024 tokens -> 717 at 0.3, 512 at 0.5`."""
    names: dict[tuple[int, int], set[str]] = {}
    outs: dict[tuple[int, int], dict[str, set[int]]] = {}
    for result in rows:
        for name, downsample, tokens_in, tokens_out in result.merged_layers:
            key = (downsample, tokens_in)
            names.setdefault(key, set()).add(name)
            outs.setdefault(key, {}).setdefault(_label(result), set()).add(tokens_out)
    lines = []
    for (downsample, tokens_in), layers in names.items():
        counts = ", ".join(
            f"{'-'.join(str(n) for n in sorted({min(out), max(out)}))} at {label}"
            for label, out in outs[(downsample, tokens_in)].items()
        )
        plural = "s" if len(layers) != 1 else ""
        lines.append(
            f"merged {len(layers)} layer{plural} at /{downsample}: {tokens_in} tokens -> {counts}"
        )
    return lines


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
