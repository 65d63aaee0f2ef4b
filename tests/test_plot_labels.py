"""The Amdahl labels in speed.png never overlap, however close the bounds are."""

from __future__ import annotations

import itertools

import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.text import Annotation

from pytest_tome.gate.results import Headroom, RatioResult
from pytest_tome.report import bound_labels, plots


def _labels(ax) -> list:
    renderer = ax.figure.canvas.get_renderer()
    return [
        child.get_window_extent(renderer)
        for child in ax.get_children()
        if isinstance(child, Annotation) and child.get_text().startswith("Amdahl bound")
    ]


def _overlaps(boxes) -> list:
    return [(a, b) for a, b in itertools.combinations(boxes, 2) if a.overlaps(b)]


def test_close_bounds_get_labels_apart() -> None:
    fig = Figure(figsize=(6, 4))
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    ax.set_ylim(0.8, 2.0)
    bounds = [(1.40, "C0"), (1.41, "C1"), (1.42, "C2"), (1.90, "C3"), (1.99, "C4")]
    for bound, color in bounds:
        ax.axhline(bound, color=color)
    bound_labels.label_bounds(ax, bounds)
    fig.canvas.draw()
    boxes = _labels(ax)
    assert len(boxes) == 5
    assert _overlaps(boxes) == []
    top = ax.get_window_extent().y1
    assert all(box.y1 <= top + 1 for box in boxes)  # the stack stays inside the axes


def test_the_check_can_fail_labels_at_the_lines_overlap() -> None:
    fig = Figure(figsize=(6, 4))
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    ax.set_ylim(0.8, 2.0)
    for bound in (1.40, 1.41):
        ax.annotate(f"Amdahl bound {bound:.2f}x", xy=(1.0, bound),
                    xycoords=("axes fraction", "data"), ha="right", fontsize=8)  # fmt: skip
    fig.canvas.draw()
    assert _overlaps(_labels(ax))


def test_speed_png_renders_close_bounds(tmp_path) -> None:
    base = (1.0, 1.02, 0.98, 1.01)
    results = [
        RatioResult(model=m, ratio=r, device="cpu", time_base=base,
                    time_tome=tuple(t / s for t in base), speedup=s, speedup_ci=(s - 0.05, s + 0.05))
        for m, s0 in (("a", 1.2), ("b", 1.25), ("c", 1.3))
        for r, s in ((0.3, s0), (0.5, s0 + 0.1))
    ]  # fmt: skip
    headroom = [Headroom("a", 0.30, 4), Headroom("b", 0.31, 4), Headroom("c", 0.32, 4)]
    png = plots.plot_speed(results, headroom, "test")
    assert png is not None and png.startswith(b"\x89PNG")
    (tmp_path / "speed.png").write_bytes(png)


@pytest.mark.parametrize("reserved", [1, 0], ids=["reserved", "control-overlaps"])
def test_an_in_scale_label_at_the_top_stays_below_the_off_scale_ones(reserved: int) -> None:
    fig = Figure(figsize=(6, 4))
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    ax.set_ylim(0.9, 3.0)
    bound_labels.draw_bound(ax, 4.40, "C0", top=3.0, slot=0)  # off scale: named at the top
    ax.axhline(2.93, color="C1")
    bound_labels.label_bounds(ax, [(2.93, "C1")], reserved)
    fig.canvas.draw()
    boxes = _labels(ax)
    assert len(boxes) == 2
    assert bool(_overlaps(boxes)) == (reserved == 0)
