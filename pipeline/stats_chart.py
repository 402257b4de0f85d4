"""The chart of `pipeline.stats`: approval rate and engagement per choice, one row of two bar
charts per dimension, as a PNG of bounded size. matplotlib is imported on first use and drawn
in a worker thread with the Agg backend (no display, nothing on the event loop). Imports the
stats records only.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from pipeline.stats import Stats

#: the PNG's size: 900 pixels wide, at most 4 rows of 220 pixels
WIDTH_INCHES = 9.0
ROW_INCHES = 2.2
DPI = 100


async def draw_chart(stats: Stats, path: Path) -> Path:
    """Draw `stats` into `path` (a PNG) off the event loop; returns `path`."""
    await asyncio.to_thread(_draw, stats, path)
    return path


def _draw(stats: Stats, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg", force=True)
    from matplotlib.figure import Figure  # a Figure, not pyplot: no global state, thread-safe

    dimensions = list(dict.fromkeys(row.dimension for row in stats.rows)) or ["(no runs)"]
    figure = Figure(figsize=(WIDTH_INCHES, ROW_INCHES * len(dimensions)), dpi=DPI)
    axes: Any = figure.subplots(len(dimensions), 2, squeeze=False)
    for index, dimension in enumerate(dimensions):
        rows = [row for row in stats.rows if row.dimension == dimension]
        names = [(row.choice or "(none)")[:28] for row in rows]
        rates = [row.approval_rate or 0.0 for row in rows]
        engagement = [row.engagement or 0.0 for row in rows]
        left, right = axes[index][0], axes[index][1]
        left.barh(names, rates, color="#4c72b0")
        left.set_xlim(0, 1)
        left.set_title(f"{dimension}: approval rate", fontsize=9)
        right.barh(names, engagement, color="#dd8452")
        right.set_title(f"{dimension}: engagement per read run", fontsize=9)
        for axis in (left, right):
            axis.tick_params(labelsize=8)
            axis.invert_yaxis()
    figure.suptitle(f"{stats.character}: what worked", fontsize=11)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png", dpi=DPI)
