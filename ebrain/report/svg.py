"""Small inline-SVG charts (pure, no plotting library): line charts, bar charts, histograms."""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape

W, H = 560, 260
LEFT, RIGHT, TOP, BOTTOM = 60, 16, 30, 44
COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b")
Point = tuple[float, float]


def nice_ticks(low: float, high: float, count: int = 5, *, integer: bool = False) -> list[float]:
    """Round tick values covering [low, high] (at least two); whole numbers only when `integer`."""
    if high <= low:
        high = low + 1.0
    raw = (high - low) / max(count - 1, 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    if integer:
        step = max(1.0, math.ceil(step))
    first = math.floor(low / step) * step
    ticks, value = [], first
    while value < high + step * 0.999:
        ticks.append(round(value, 10))
        value += step
    return ticks if len(ticks) > 1 else [first, first + step]


def _fmt(value: float) -> str:
    return f"{value:.0f}" if value == int(value) else f"{value:.3g}"


class _Frame:
    """Axes over [x0, x1] x [y0, y1] in the plot area, with ticks, labels and a title."""

    def __init__(self, xs: Sequence[float], ys: Sequence[float], y_max: float | None = None, *,
                 y_integer: bool = False) -> None:
        self.xt = nice_ticks(min(xs, default=0.0), max(xs, default=1.0))
        self.yt = nice_ticks(0.0, y_max if y_max is not None else max(ys, default=1.0), integer=y_integer)
        self.x0, self.x1, self.y0, self.y1 = self.xt[0], self.xt[-1], self.yt[0], self.yt[-1]

    def x(self, v: float) -> float:
        return LEFT + (v - self.x0) / (self.x1 - self.x0) * (W - LEFT - RIGHT)

    def y(self, v: float) -> float:
        return H - BOTTOM - (v - self.y0) / (self.y1 - self.y0) * (H - TOP - BOTTOM)

    def axes(self, x_label: str, y_label: str, x_ticks: bool = True) -> list[str]:
        out = [f'<line x1="{LEFT}" y1="{H - BOTTOM}" x2="{W - RIGHT}" y2="{H - BOTTOM}" stroke="#444"/>',
               f'<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{H - BOTTOM}" stroke="#444"/>']
        for t in self.yt:
            y = self.y(t)
            out.append(f'<line x1="{LEFT}" y1="{y:.1f}" x2="{W - RIGHT}" y2="{y:.1f}" stroke="#eee"/>')
            out.append(f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{_fmt(t)}</text>')
        if x_ticks:
            out += [f'<text x="{self.x(t):.1f}" y="{H - BOTTOM + 16}" text-anchor="middle">{_fmt(t)}</text>'
                    for t in self.xt]
        out.append(f'<text x="{(LEFT + W - RIGHT) / 2}" y="{H - 8}" text-anchor="middle">{escape(x_label)}</text>')
        out.append(f'<text transform="translate(14,{(TOP + H - BOTTOM) / 2}) rotate(-90)" '
                   f'text-anchor="middle">{escape(y_label)}</text>')
        return out


def _svg(title: str, body: list[str]) -> str:
    head = (f'<svg class="plot" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {H}" width="{W}" height="{H}" '
            f'font-family="sans-serif" font-size="11" role="img" aria-label="{escape(title)}">'
            f'<title>{escape(title)}</title>'
            f'<text x="{W / 2}" y="18" text-anchor="middle" font-size="13" font-weight="bold">{escape(title)}</text>')
    return head + "".join(body) + "</svg>"


def _no_data(title: str) -> str:
    return _svg(title, [f'<text x="{W / 2}" y="{H / 2}" text-anchor="middle" fill="#888">no data</text>'])


def _legend(names: Sequence[str]) -> list[str]:
    out = []
    for i, name in enumerate(names):
        x = LEFT + 8 + i * 130
        out.append(f'<rect x="{x}" y="{TOP - 2}" width="10" height="10" fill="{COLORS[i % len(COLORS)]}"/>')
        out.append(f'<text x="{x + 14}" y="{TOP + 7}">{escape(name)}</text>')
    return out


def line_chart(title: str, series: dict[str, list[Point]], x_label: str, y_label: str,
               y_max: float | None = None) -> str:
    """One polyline (with point markers) per named series."""
    points = [p for pts in series.values() for p in pts]
    if not points:
        return _no_data(title)
    frame = _Frame([p[0] for p in points], [p[1] for p in points], y_max)
    body = frame.axes(x_label, y_label)
    for i, pts in enumerate(series.values()):
        color = COLORS[i % len(COLORS)]
        coords = " ".join(f"{frame.x(x):.1f},{frame.y(y):.1f}" for x, y in pts)
        body.append(f'<polyline fill="none" stroke="{color}" stroke-width="2" points="{coords}"/>')
        body += [f'<circle cx="{frame.x(x):.1f}" cy="{frame.y(y):.1f}" r="2.5" fill="{color}"/>' for x, y in pts]
    return _svg(title, body + _legend(list(series)))


def bar_chart(title: str, bars: list[tuple[str, float]], y_label: str, y_max: float | None = None) -> str:
    """Labelled vertical bars, the value written above each."""
    if not bars:
        return _no_data(title)
    frame = _Frame([0.0, 1.0], [v for _, v in bars], y_max)
    body = frame.axes("", y_label, x_ticks=False)
    slot = (W - LEFT - RIGHT) / len(bars)
    for i, (label, value) in enumerate(bars):
        x, top = LEFT + i * slot + slot * 0.2, frame.y(value)
        body.append(f'<rect x="{x:.1f}" y="{top:.1f}" width="{slot * 0.6:.1f}" height="{H - BOTTOM - top:.1f}" '
                    f'fill="{COLORS[i % len(COLORS)]}"/>')
        body.append(f'<text x="{x + slot * 0.3:.1f}" y="{top - 4:.1f}" text-anchor="middle">{_fmt(value)}</text>')
        body.append(f'<text x="{x + slot * 0.3:.1f}" y="{H - BOTTOM + 16}" text-anchor="middle">'
                    f'{escape(label)}</text>')
    return _svg(title, body)


def histogram(title: str, values: Sequence[float], x_label: str, bins: int = 12) -> str:
    """Counts of `values` in `bins` equal-width bins."""
    if not values:
        return _no_data(title)
    low, high = min(values), max(values)
    width = (high - low) / bins or 1.0
    counts = [0] * bins
    for v in values:
        counts[min(int((v - low) / width), bins - 1)] += 1
    frame = _Frame([low, low + width * bins], [float(c) for c in counts], y_integer=True)
    body = frame.axes(x_label, "requests")
    for i, count in enumerate(counts):
        x0, x1, top = frame.x(low + i * width), frame.x(low + (i + 1) * width), frame.y(count)
        body.append(f'<rect x="{x0:.1f}" y="{top:.1f}" width="{max(x1 - x0 - 1, 1):.1f}" '
                    f'height="{H - BOTTOM - top:.1f}" fill="{COLORS[0]}"/>')
    return _svg(title, body)
