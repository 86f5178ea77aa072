"""The per-block metric plot, drawn on the server as an SVG line chart: plain numbers in, coordinates out.

The page draws what this computes (templates/registry/_block_chart.html) and gives the same numbers in a
table, so the chart needs no script and says nothing a screen reader cannot read.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass

WIDTH, HEIGHT = 640, 272
LEFT, RIGHT, TOP, BOTTOM = 52, 628, 14, 222  # the plot area inside the view box
# One look per series: stroke pattern and marker differ, so the lines part without colour.
STYLES = ("solid", "dashed", "dotted")


@dataclass(frozen=True)
class ChartPoint:
    block: int
    value: float
    x: float
    y: float
    marked: bool  # a block the head reads


@dataclass(frozen=True)
class ChartSeries:
    name: str
    style: str  # one of STYLES, a CSS class
    points: list[ChartPoint]

    @property
    def path(self) -> str:
        """SVG polyline points, "x,y x,y ..."."""
        return " ".join(f"{p.x:.1f},{p.y:.1f}" for p in self.points)


@dataclass(frozen=True)
class Tick:
    position: float
    label: str


@dataclass(frozen=True)
class MarkedBand:
    x: float
    width: float
    label_x: float
    block: int


@dataclass(frozen=True)
class BlockChart:
    """What the template draws: series of points, axis ticks, the bands of the head's blocks, and a
    sentence that says what the picture shows (the SVG's description)."""

    series: list[ChartSeries]
    x_ticks: list[Tick]
    y_ticks: list[Tick]
    bands: list[MarkedBand]
    description: str
    width: int = WIDTH
    height: int = HEIGHT
    left: int = LEFT
    right: int = RIGHT
    top: int = TOP
    bottom: int = BOTTOM
    plot_height: int = BOTTOM - TOP
    x_label_y: int = BOTTOM + 19  # block numbers under the plot
    axis_title_y: int = HEIGHT - 4
    axis_title_x: int = (LEFT + RIGHT) // 2
    y_label_x: int = LEFT - 6
    band_label_y: int = TOP + 11


def block_chart(
    series: Sequence[tuple[str, Sequence[tuple[int, float | None]]]], *, marked_blocks: Collection[int]
) -> BlockChart | None:
    """A line per named series of (block, value in [0, 1]) pairs (None values are left out), the blocks in
    `marked_blocks` shaded. The value axis spans the data, rounded out to tenths (so small differences
    between blocks show), and says so with its ticks. None when there is nothing to draw."""
    blocks = sorted({block for _, values in series for block, value in values if value is not None})
    values = [value for _, pairs in series for _, value in pairs if value is not None]
    if not blocks:
        return None
    low = max(0.0, math.floor((min(values) - 0.02) * 10) / 10)
    high = min(1.0, math.ceil((max(values) + 0.02) * 10) / 10)
    if high - low < 0.2:
        low = max(0.0, high - 0.2)
        high = low + 0.2
    first, last = blocks[0], blocks[-1]
    step = (RIGHT - LEFT) / (last - first + 1)

    def x_of(block: int) -> float:
        return LEFT + (block - first + 0.5) * step

    def y_of(value: float) -> float:
        return BOTTOM - (value - low) / (high - low) * (BOTTOM - TOP)

    drawn = [
        ChartSeries(
            name=name,
            style=STYLES[index % len(STYLES)],
            points=[
                ChartPoint(block, value, x_of(block), y_of(value), block in marked_blocks)
                for block, value in sorted(pairs)
                if value is not None
            ],
        )
        for index, (name, pairs) in enumerate(series)
    ]
    tenths = round((high - low) * 10)
    y_step = 1 if tenths <= 5 else 2
    y_ticks = [Tick(y_of(low + i / 10), f"{low + i / 10:.1f}") for i in range(0, tenths + 1, y_step)]
    x_ticks = [Tick(x_of(block), str(block)) for block in range(first, last + 1)]
    bands = [
        MarkedBand(x=x_of(block) - step / 2, width=step, label_x=x_of(block), block=block)
        for block in sorted(marked_blocks)
        if first <= block <= last
    ]
    return BlockChart(
        series=drawn, x_ticks=x_ticks, y_ticks=y_ticks, bands=bands, description=_describe(drawn, first, last)
    )


def _describe(series: list[ChartSeries], first: int, last: int) -> str:
    """One sentence per series: its best block, and its value at each marked block."""
    sentences = []
    for line in series:
        if not line.points:
            continue
        best = max(line.points, key=lambda p: (p.value, -p.block))
        marked = [f"{p.value:.3f} at block {p.block}, the head's" for p in line.points if p.marked]
        sentences.append(
            f"{line.name}: highest {best.value:.3f} at block {best.block}"
            + (f"; {', '.join(marked)}" if marked else "")
        )
    return f"Blocks {first} to {last}. " + ". ".join(sentences) + "."
