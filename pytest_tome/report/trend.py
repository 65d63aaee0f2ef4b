"""trend.png and the trend line of the job summary, from a `--tome-history` file.

One row of panels per model (and method): speedup and PSNR over the commits of the file, one
line per ratio, with the baseline's band behind it (the speedup's stored 95% interval and the
line the gate fails below; PSNR from the baseline down to its tolerance). Several runs of one
commit are dots around their median; a dotted rule marks where the fingerprint changed.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pytest_tome.gate.results import float_from_json

TREND_WINDOW = 5  # the last run is compared with the median of up to this many before it
Key = tuple[str, str, float]  # model, method, ratio


@dataclass(frozen=True)
class Band:
    """A baseline entry's figures, and the tolerances that draw its band."""

    speedup: float | None
    speedup_ci: tuple[float, float] | None
    psnr: float | None
    tol_speed: float
    tol_psnr: float


def entry_key(entry: dict[str, Any]) -> Key:
    return (entry["model"], entry.get("method", "tome"), float(entry["ratio"]))


def _label(record: dict[str, Any]) -> str:
    commit = record.get("commit") or {}
    if commit.get("sha"):
        return commit["sha"][:7] + ("+" if commit.get("dirty") else "")
    return str(record.get("date", "?"))[:16]


def _series_name(model: str, method: str) -> str:
    return model if method == "tome" else f"{model} ({method})"


def _psnr(entry: dict[str, Any]) -> float | None:
    value = float_from_json(entry.get("psnr"))
    return value if value is not None and math.isfinite(value) else None


def baseline_bands(
    folder: Path, keys: Iterable[tuple[str, Key]], tol_speed: float, tol_psnr: float
) -> dict[Key, Band]:
    """The stored baseline of each (device, key), where one can be read; others get no band."""
    from pytest_tome.gate.store.baselines import (
        BaselineError,
        baseline_path,
        ratio_key,
        read_baselines,
    )

    bands: dict[Key, Band] = {}
    files: dict[tuple[str, str], dict[str, Any]] = {}
    for device, key in keys:
        model, method, ratio = key
        if (device, model) not in files:
            try:
                files[(device, model)] = read_baselines(baseline_path(folder, device, model))
            except (BaselineError, OSError):
                files[(device, model)] = {}
        entry = files[(device, model)].get(ratio_key(ratio, method))
        if entry is not None:
            stored = entry.result
            psnr = stored.psnr if stored.psnr is not None and math.isfinite(stored.psnr) else None
            bands[key] = Band(stored.speedup, stored.speedup_ci, psnr, tol_speed, tol_psnr)
    return bands


def _points(records: Sequence[dict[str, Any]]) -> tuple[list[str], dict[Key, list[tuple]]]:
    """Commit labels in first-seen order, and per key its (x, speedup, psnr) of every run."""
    labels: list[str] = []
    points: dict[Key, list[tuple]] = {}
    for record in records:
        label = _label(record)
        if label not in labels:
            labels.append(label)
        x = labels.index(label)
        for entry in record["results"]:
            points.setdefault(entry_key(entry), []).append((x, entry.get("speedup"), _psnr(entry)))
    return labels, points


def _changes(records: Sequence[dict[str, Any]], labels: list[str]) -> list[float]:
    """x positions (between commits) where the fingerprint differs from the run before."""
    rules, last = [], None
    for record in records:
        now = record["fingerprint"].get("id")
        if last is not None and now != last:
            rules.append(labels.index(_label(record)) - 0.5)
        last = now
    return sorted(set(rules))


def plot_trend(
    records: Sequence[dict[str, Any]], bands: dict[Key, Band], subtitle: str = ""
) -> bytes | None:
    """trend.png as bytes; None when no record holds a measured speedup."""
    from matplotlib import rc_context
    from matplotlib.figure import Figure

    from pytest_tome.report.plots import COLORS, MARKERS, NOTE_COLOR, STYLE, _png

    labels, points = _points(records)
    series: dict[tuple[str, str], list[Key]] = {}
    for key, values in points.items():
        if any(speedup is not None for _, speedup, _ in values):
            series.setdefault(key[:2], []).append(key)
    if not series:
        return None
    ratios = sorted({key[2] for keys in series.values() for key in keys})
    rules = _changes(records, labels)
    with rc_context(STYLE):
        fig = Figure(figsize=(max(9.0, 0.45 * len(labels) + 5), 2.8 * len(series) + 1.0))
        axes = fig.subplots(len(series), 2, squeeze=False)
        for row, ((model, method), keys) in enumerate(series.items()):
            speed_ax, psnr_ax = axes[row]
            speed_ax.set_title(f"{_series_name(model, method)}: speedup", loc="left")
            psnr_ax.set_title(f"{_series_name(model, method)}: PSNR", loc="left")
            speed_ax.set_ylabel("speedup (x)")
            psnr_ax.set_ylabel("PSNR (dB)")
            for key in sorted(keys, key=lambda k: k[2]):
                i = ratios.index(key[2])
                style = {"color": COLORS[i % len(COLORS)], "marker": MARKERS[i % len(MARKERS)]}
                _draw(speed_ax, points[key], 1, f"ratio {key[2]:g}", style)
                _draw(psnr_ax, points[key], 2, f"ratio {key[2]:g}", style)
                _band(speed_ax, psnr_ax, bands.get(key), style["color"], len(labels))
            for ax in (speed_ax, psnr_ax):
                for x in rules:
                    ax.axvline(x, color=NOTE_COLOR, linestyle=":", linewidth=1)
                ax.set_xticks(range(len(labels)))
                ax.set_xticklabels(labels, rotation=45, ha="right", fontsize=8)
                ax.set_xlim(-0.5, len(labels) - 0.5)
            speed_ax.legend(fontsize=8, loc="best")
        fig.suptitle("ToMe across commits", fontsize=13, fontweight="bold", x=0.01, ha="left")
        note = "band: the baseline's speedup interval, dashed: where the gate fails"
        note += "; PSNR band: baseline down to its tolerance"
        if rules:
            note += "; dotted: fingerprint changed"
        fig.text(0.01, 0.985 - 0.35 / fig.get_figheight(), f"{subtitle}\n{note}".strip(),
                 fontsize=8, color=NOTE_COLOR, ha="left", va="top")  # fmt: skip
        fig.tight_layout(rect=(0, 0, 1, 1 - 0.62 / fig.get_figheight()))
        return _png(fig)


def _draw(ax: Any, values: list[tuple], index: int, label: str, style: dict[str, str]) -> None:
    """Every run as a small dot, and a line through each commit's median."""
    runs = [(v[0], v[index]) for v in values if v[index] is not None]
    if not runs:
        return
    xs = sorted({x for x, _ in runs})
    medians = [statistics.median(y for x, y in runs if x == at) for at in xs]
    ax.plot(xs, medians, label=label, color=style["color"], marker=style["marker"], markersize=5)
    if len(runs) > len(xs):
        ax.scatter([x for x, _ in runs], [y for _, y in runs], s=9, color=style["color"], alpha=0.5)


def _band(speed_ax: Any, psnr_ax: Any, band: Band | None, color: str, width: int) -> None:
    if band is None:
        return
    if band.speedup is not None:
        low, high = band.speedup_ci or (band.speedup, band.speedup)
        speed_ax.axhspan(low, high, color=color, alpha=0.13, linewidth=0)
        speed_ax.axhline(band.speedup * (1 - band.tol_speed), color=color, linestyle="--",
                         linewidth=1)  # fmt: skip
    if band.psnr is not None:
        psnr_ax.axhspan(band.psnr - band.tol_psnr, band.psnr, color=color, alpha=0.13, linewidth=0)


def trend_line(records: Sequence[dict[str, Any]], window: int = TREND_WINDOW) -> str | None:
    """One line: the last run against the median of the previous `window` runs of its
    fingerprint, per model and ratio; None without records."""
    if not records:
        return None
    last = records[-1]
    same = [r for r in records[:-1] if r["fingerprint"].get("id") == last["fingerprint"].get("id")]
    before = same[-window:]
    head = f"**ToMe trend**: run {_label(last)}"
    if not before:
        return f"{head} is the first with its fingerprint in the history: nothing to compare."
    parts = []
    for entry in last["results"]:
        if entry.get("speedup") is None:
            continue
        key = entry_key(entry)
        old = [e for r in before for e in r["results"] if entry_key(e) == key]
        speedups = [e["speedup"] for e in old if e.get("speedup") is not None]
        text = f"{_series_name(key[0], key[1])} {key[2]:g}: {entry['speedup']:.2f}x"
        if speedups:
            median = statistics.median(speedups)
            text += f" (was {median:.2f}x, {100 * (entry['speedup'] / median - 1):+.1f}%)"
        psnr, psnrs = _psnr(entry), [p for p in map(_psnr, old) if p is not None]
        if psnr is not None and psnrs:
            text += f", PSNR {psnr:.1f} dB ({psnr - statistics.median(psnrs):+.1f} dB)"
        parts.append(text)
    runs = f"{len(before)} previous run{'s' if len(before) != 1 else ''}"
    return f"{head} against the median of the {runs}: " + ("; ".join(parts) or "no speedups")
