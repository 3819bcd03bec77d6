"""The usage chart as plain numbers for an SVG template: bars, gridlines and labels, no script."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date

from agentbilling.domain.usage import DayUsage

WIDTH, HEIGHT = 720, 220
LEFT, RIGHT, TOP, BOTTOM = 40, 8, 12, 28  # room for the axis labels


@dataclass(frozen=True, slots=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    value: int
    label: str  # the day, in the reader's locale
    tick: bool  # whether the day is written under the axis
    future: bool  # a day of the period still to come


@dataclass(frozen=True, slots=True)
class Chart:
    bars: list[Bar]
    gridlines: list[tuple[float, int]]  # (y, value)
    total: int
    width: int = WIDTH
    height: int = HEIGHT
    left: int = LEFT
    baseline: int = HEIGHT - BOTTOM


def nice_ceiling(n: int) -> int:
    """The smallest of 1, 2, 5, 10, 20, 50, … that is at least n (at least 1)."""
    step = 1
    while True:
        for m in (1, 2, 5):
            if step * m >= n:
                return step * m
        step *= 10


def usage_chart(days: Sequence[DayUsage], today: date, label: Callable[[date], str]) -> Chart:
    top = nice_ceiling(max((d.billable_sessions for d in days), default=0))
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    slot = plot_w / max(len(days), 1)
    every = max(1, round(len(days) / 8))  # about eight day labels, whatever the period's length
    bars = []
    for i, d in enumerate(days):
        h = plot_h * d.billable_sessions / top
        bars.append(Bar(x=LEFT + i * slot + slot * 0.15, y=TOP + plot_h - h, width=slot * 0.7, height=h,
                        value=d.billable_sessions, label=label(d.day), tick=i % every == 0, future=d.day > today))
    grid = [(TOP + plot_h - plot_h * k / 2, top * k // 2) for k in (0, 1, 2) if top * k % 2 == 0]
    return Chart(bars=bars, gridlines=grid, total=sum(d.billable_sessions for d in days))
