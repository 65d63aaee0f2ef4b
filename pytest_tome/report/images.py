"""The report's image grid as PNG bytes: one row per ratio, one column per model.

Like the thesis's figure 5.3 (images of one seed); drawn on matplotlib's Agg canvas, as
`plots` draws the speed and quality figures, with their style and colours.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Sequence

import numpy as np
from matplotlib import rc_context
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from pytest_tome.gate.results import NOT_MERGEABLE, ImageThumb, RatioResult
from pytest_tome.report.plots import GRID_DPI, NOTE_COLOR, STYLE, _groups, _png


def _pixels(thumb: ImageThumb) -> np.ndarray:
    return thumb.to_array()


def _wrap(name: str, width: int = 18) -> str:
    """Break a long model name after '/' and then at hyphens, for a label beside a row."""
    owner, _, rest = name.rpartition("/")
    pieces = [owner + "/"] if owner else []
    pieces += textwrap.wrap(rest, width=width, break_on_hyphens=True) or [rest]
    return "\n".join(pieces)


def _blank(ax: Axes, text: str) -> None:
    ax.set_facecolor("#f2f2f2")
    ax.text(
        0.5,
        0.5,
        text,
        ha="center",
        va="center",
        fontsize=8,
        color=NOTE_COLOR,
        transform=ax.transAxes,
        wrap=True,
    )


def plot_images(results: Sequence[RatioResult], sub: str = "") -> bytes | None:
    """One row per ratio (the unmerged image first), one column per model.

    Reading down a column shows one model's image as the ratio grows, so the damage a merge
    does is seen at a glance.
    """
    groups = {
        m: rows
        for m, rows in _groups(results).items()
        if any(r.image_tome is not None or r.image_base is not None for r in rows)
    }
    if not groups:
        return None
    ratios = [0.0, *sorted({r.ratio for rows in groups.values() for r in rows} - {0.0})]
    titles = {
        m: _wrap(m) + ("\n(random weights)" if rows[0].random_weights else "")
        for m, rows in groups.items()
    }
    with rc_context({**STYLE, "axes.grid": False}):
        label_width = 1.1
        title_lines = max(t.count("\n") + 1 for t in titles.values())
        width = max(1.55 * len(groups) + label_width, 5.5)  # room for the title
        fig = Figure(figsize=(width, 1.75 * len(ratios) + 1.0 + 0.15 * title_lines))
        axes = np.atleast_2d(fig.subplots(len(ratios), len(groups), squeeze=False))
        for col, (model, rows) in enumerate(groups.items()):
            by_ratio = {r.ratio: r for r in rows}
            base = next((r.image_base for r in rows if r.image_base is not None), None)
            for row, ratio in enumerate(ratios):
                ax = axes[row][col]
                ax.set_xticks([])
                ax.set_yticks([])
                for spine in ax.spines.values():
                    spine.set_visible(False)
                result = by_ratio.get(ratio)
                image = base if row == 0 else (result.image_tome if result else None)
                if image is not None:
                    ax.imshow(_pixels(image), interpolation="antialiased")
                    if row and result is not None and result.psnr is not None:
                        quality = (
                            f"{result.psnr:.1f} dB" if math.isfinite(result.psnr) else "identical"
                        )
                        ax.set_xlabel(
                            quality + (" (random)" if result.random_weights else ""),
                            fontsize=8,
                            color=NOTE_COLOR,
                        )
                elif result is not None and result.verdict == NOT_MERGEABLE:
                    _blank(ax, "not\nmergeable")
                else:
                    _blank(ax, "no image")
                if col == 0:
                    ax.text(
                        -0.1,
                        0.5,
                        "unmerged" if row == 0 else f"ratio {ratio:g}",
                        transform=ax.transAxes,
                        ha="right",
                        va="center",
                        fontsize=9,
                        fontweight="bold",
                    )
            axes[0][col].set_title(titles[model], fontsize=8.5)
        fig.suptitle(
            "Token merging: one seed at every ratio",
            fontsize=13,
            fontweight="bold",
            x=0.01,
            ha="left",
        )
        caption = "under each image: PSNR against the unmerged one"
        if any(r.random_weights for rows in groups.values() for r in rows):
            caption += "; random weights draw noise: their PSNR is a sensitivity, not quality"
        text = "\n".join(
            textwrap.wrap(
                f"{sub}; {caption}" if sub else caption, width=int(fig.get_figwidth() * 12)
            )
        )
        lines = text.count("\n") + 1
        height = fig.get_figheight() + 0.15 * (lines - 1)
        fig.set_figheight(height)
        fig.text(
            0.01,
            1 - 0.42 / height,
            text,
            fontsize=8.5,
            color=NOTE_COLOR,
            ha="left",
            va="top",
            linespacing=1.4,
        )
        fig.subplots_adjust(
            left=label_width / fig.get_figwidth(),
            right=0.99,
            bottom=0.35 / height,
            top=1 - (0.7 + 0.15 * lines + 0.15 * title_lines) / height,
            wspace=0.06,
            hspace=0.35,
        )
        return _png(fig, dpi=GRID_DPI)
