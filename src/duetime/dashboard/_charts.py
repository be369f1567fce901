"""The overview's charts, as shapes for the SVG templates (numbers only).

Nothing a store holds reaches a chart but counts and durations: the
template draws rectangles and polylines from the numbers computed here.
"""

from __future__ import annotations

from dataclasses import dataclass

from duetime.durable import Minute

from ._text import seconds, when

__all__ = ["Chart", "lateness_chart", "throughput_chart"]

WIDTH, HEIGHT = 560, 180
_LEFT, _RIGHT, _TOP, _BOTTOM = 48, 8, 10, 22


@dataclass(frozen=True, slots=True)
class Bar:
    x: float
    y: float
    w: float
    h: float
    kind: str  # css class: completed, retried, failed
    title: str


@dataclass(frozen=True, slots=True)
class Line:
    points: str
    kind: str


@dataclass(frozen=True, slots=True)
class Tick:
    y: float
    label: str


@dataclass(frozen=True, slots=True)
class Chart:
    """One chart: its size, shapes, y ticks, x labels, and a text summary."""

    width: int
    height: int
    bars: tuple[Bar, ...]
    lines: tuple[Line, ...]
    ticks: tuple[Tick, ...]
    first: str
    last: str
    summary: str


def _round_top(top: float) -> float:
    if top <= 0:
        return 1.0
    magnitude = 1.0
    while magnitude * 10 <= top:
        magnitude *= 10
    while magnitude > top:
        magnitude /= 10
    for m in (1, 2, 5, 10):
        if magnitude * m >= top:
            return magnitude * m
    return magnitude * 10


def _frame(minutes: list[Minute]) -> tuple[float, float, float]:
    plot_w = WIDTH - _LEFT - _RIGHT
    plot_h = HEIGHT - _TOP - _BOTTOM
    slot = plot_w / max(1, len(minutes))
    return plot_w, plot_h, slot


def throughput_chart(minutes: list[Minute]) -> Chart:
    """Runs finished per minute, stacked by outcome."""
    _, plot_h, slot = _frame(minutes)
    top = _round_top(max((m.finished for m in minutes), default=0))
    bars = []
    for i, m in enumerate(minutes):
        x = _LEFT + i * slot + 1
        base = _TOP + plot_h
        for kind, n in (("completed", m.completed), ("retried", m.retried), ("failed", m.failed)):
            if n <= 0:
                continue
            h = plot_h * n / top
            base -= h
            title = f"{when(m.start)}: {n} {kind}"
            bars.append(Bar(round(x, 1), round(base, 1), round(max(1.0, slot - 2), 1),
                            round(h, 1), kind, title))  # fmt: skip
    ticks = tuple(Tick(round(_TOP + plot_h * (1 - f), 1), f"{top * f:g}") for f in (0, 0.5, 1))
    total = sum(m.finished for m in minutes)
    done = sum(m.completed for m in minutes)
    failed = sum(m.failed for m in minutes)
    summary = (
        f"{total} runs finished in the last {len(minutes)} min: {done} completed,"
        f" {sum(m.retried for m in minutes)} retried, {failed} failed"
    )
    return Chart(WIDTH, HEIGHT, tuple(bars), (), ticks, _label(minutes, 0), _label(minutes, -1),
                 summary)  # fmt: skip


def lateness_chart(minutes: list[Minute]) -> Chart:
    """How late runs started, per minute: the mean and the largest."""
    _, plot_h, slot = _frame(minutes)
    top = _round_top(max((m.lateness_max for m in minutes), default=0.0))
    lines = []
    for kind in ("max", "mean"):
        pts = []
        for i, m in enumerate(minutes):
            if not m.started:
                continue
            x = _LEFT + (i + 0.5) * slot
            value = m.lateness_max if kind == "max" else m.lateness_mean
            y = _TOP + plot_h * (1 - value / top)
            pts.append(f"{x:.1f},{y:.1f}")
        if pts:
            lines.append(Line(" ".join(pts), kind))
    ticks = tuple(Tick(round(_TOP + plot_h * (1 - f), 1), seconds(top * f)) for f in (0, 0.5, 1))
    started = sum(m.started for m in minutes)
    mean = sum(m.lateness_total for m in minutes) / started if started else 0.0
    worst = max((m.lateness_max for m in minutes), default=0.0)
    summary = (
        f"{started} runs started in the last {len(minutes)} min;"
        f" mean start lateness {seconds(mean)}, largest {seconds(worst)}"
    )
    return Chart(WIDTH, HEIGHT, (), tuple(lines), ticks, _label(minutes, 0),
                 _label(minutes, -1), summary)  # fmt: skip


def _label(minutes: list[Minute], i: int) -> str:
    return when(minutes[i].start)[11:16] if minutes else ""
