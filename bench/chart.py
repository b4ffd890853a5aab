"""Draws a benchmark's PNG: median wall time and peak RSS per command, min-max as error bars.

Kept apart from the harness and fed plain values so matplotlib (about a second to import) is
only loaded when a report is written, never while commands are being measured.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

_OK_COLOUR = "#4c72b0"
_FAILED_COLOUR = "#c44e52"


@dataclass(frozen=True, slots=True)
class Bar:
    """One command's bar in one panel: median with its min and max."""

    label: str
    median: float
    low: float
    high: float
    failed: bool


@dataclass(frozen=True, slots=True)
class Panel:
    """One metric across the commands, e.g. wall time in ms."""

    title: str
    unit: str
    bars: tuple[Bar, ...]


def draw(path: Path, title: str, panels: Sequence[Panel]) -> None:
    """Writes the panels side by side as a PNG; failed commands are drawn red and labelled."""
    import matplotlib

    matplotlib.use("Agg")  # no display here, and a benchmark must never open a window
    import matplotlib.pyplot as plt

    count = max(len(panel.bars) for panel in panels)
    fig, axes = plt.subplots(
        1, len(panels), figsize=(max(4.0, 1.3 * count) * len(panels), 4.5), squeeze=False
    )
    for ax, panel in zip(axes[0], panels, strict=True):
        positions = list(range(len(panel.bars)))
        ax.bar(
            positions,
            [bar.median for bar in panel.bars],
            yerr=[
                [bar.median - bar.low for bar in panel.bars],
                [bar.high - bar.median for bar in panel.bars],
            ],
            capsize=5,
            color=[_FAILED_COLOUR if bar.failed else _OK_COLOUR for bar in panel.bars],
        )
        for position, bar in zip(positions, panel.bars, strict=True):
            if bar.failed:
                ax.text(position, 0, "failed", ha="center", va="bottom", color="white", fontsize=8)
        ax.set_xticks(positions, [bar.label for bar in panel.bars], rotation=20, ha="right")
        ax.set_title(panel.title)
        ax.set_ylabel(panel.unit)
        ax.set_ylim(bottom=0)
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
