"""The Amdahl bounds on the speedup plot: one dotted line per model, each named at the right,
labels pushed apart so that close bounds never overlap, and bounds far above the data named at
the top instead of squashing it."""

from __future__ import annotations

from collections.abc import Sequence

from matplotlib.axes import Axes


def draw_bound(ax: Axes, bound: float, color: str, *, top: float, slot: int) -> None:
    """The Amdahl bound: a dotted line in the model's colour, labelled at the right; a bound
    far above every measured speedup is named at the top instead of squashing the data."""
    if bound > top:
        ax.annotate(
            f"Amdahl bound {bound:.2f}x (off scale)",
            xy=(1.0, 1.0),
            xycoords="axes fraction",
            xytext=(-4, -4 - 11 * slot),
            textcoords="offset points",
            ha="right",
            va="top",
            fontsize=8,
            color=color,
        )
        return
    ax.axhline(bound, color=color, ls=":", lw=1.6)


LABEL_GAP_PT = 11.0  # one 8 pt line of text and a little air


def label_bounds(ax: Axes, bounds: Sequence[tuple[float, str]], reserved: int = 0) -> None:
    """Name each in-scale Amdahl line at the right, just above it; labels of close bounds are
    pushed apart (at least LABEL_GAP_PT) so they never overlap, and stay below the `reserved`
    lines that off-scale bounds take at the top. Call once the y-limits are final.
    """
    low, high = ax.get_ylim()
    height_pt = ax.get_position().height * ax.figure.get_figheight() * 72
    ceiling = height_pt - reserved * LABEL_GAP_PT - 4  # off-scale labels stand above this
    placed: list[float] = []  # label baselines, in points above the axes' bottom
    for bound, _ in sorted(bounds):
        at = (bound - low) / (high - low) * height_pt + 3
        placed.append(max(at, placed[-1] + LABEL_GAP_PT) if placed else at)
    overflow = placed[-1] + LABEL_GAP_PT - ceiling if placed else 0.0
    if overflow > 0:  # shift the stack down, keeping the gaps
        placed = [y - overflow for y in placed]
    for (bound, color), y in zip(sorted(bounds), placed):
        line = (bound - low) / (high - low) * height_pt
        ax.annotate(
            f"Amdahl bound {bound:.2f}x",
            xy=(1.0, bound),
            xycoords=("axes fraction", "data"),
            xytext=(-4, y - line),
            textcoords="offset points",
            ha="right",
            va="bottom",
            fontsize=8,
            color=color,
            bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.75, "pad": 0.6},
        )
