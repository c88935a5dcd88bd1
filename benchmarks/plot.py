"""A line chart as SVG text, written by hand: one plot does not pay for a plotting library.

``line_chart`` draws series of (x, y) points on a log-10 x axis and a linear y axis from 0,
with ticks, labels and a legend; the SVG is plain text, so it diffs and renders anywhere
(GitHub, a browser, the docs site) without a font or image toolchain.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape


@dataclass(frozen=True)
class Series:
    label: str
    points: Sequence[tuple[float, float]]
    colour: str
    dashed: bool = False


WIDTH, HEIGHT = 640, 360
LEFT, RIGHT, TOP, BOTTOM = 70, 40, 40, 60


def _nice_ceiling(value: float) -> float:
    """The smallest of 1, 2, 2.5, 5 x 10^n at or above ``value`` (for the y axis top)."""
    if value <= 0:
        return 1.0
    exponent = math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        candidate = step * 10**exponent
        if candidate >= value:
            return float(candidate)
    return float(10 ** (exponent + 1))


def line_chart(title: str, x_label: str, y_label: str, series: Sequence[Series]) -> str:
    xs = [x for s in series for x, _ in s.points if x > 0]
    ys = [y for s in series for _, y in s.points]
    x_lo = 10 ** math.floor(math.log10(min(xs)))
    x_hi = 10 ** math.ceil(math.log10(max(xs)))
    y_hi = _nice_ceiling(max(ys) * 1.1)
    plot_w = WIDTH - LEFT - RIGHT
    plot_h = HEIGHT - TOP - BOTTOM

    def px(x: float) -> float:
        return LEFT + plot_w * (math.log10(x) - math.log10(x_lo)) / (
            math.log10(x_hi) - math.log10(x_lo)
        )

    def py(y: float) -> float:
        return TOP + plot_h * (1 - y / y_hi)

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">',
        f'<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>',
        f'<text x="{WIDTH / 2}" y="22" text-anchor="middle" font-size="14">{escape(title)}</text>',
    ]
    for i in range(5):
        y = y_hi * i / 4
        out.append(
            f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{py(y):.1f}" y2="{py(y):.1f}" '
            'stroke="#ddd"/>'
        )
        out.append(f'<text x="{LEFT - 6}" y="{py(y) + 4:.1f}" text-anchor="end">{y:g}</text>')
    decade = x_lo
    while decade <= x_hi:
        out.append(
            f'<line x1="{px(decade):.1f}" x2="{px(decade):.1f}" y1="{TOP}" '
            f'y2="{HEIGHT - BOTTOM}" stroke="#ddd"/>'
        )
        out.append(
            f'<text x="{px(decade):.1f}" y="{HEIGHT - BOTTOM + 16}" '
            f'text-anchor="middle">{decade:,.0f}</text>'
        )
        decade *= 10
    out.append(
        f'<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#333"/>'
    )
    out.append(
        f'<text x="{LEFT + plot_w / 2}" y="{HEIGHT - 18}" text-anchor="middle">'
        f"{escape(x_label)}</text>"
    )
    out.append(
        f'<text x="16" y="{TOP + plot_h / 2}" text-anchor="middle" '
        f'transform="rotate(-90 16 {TOP + plot_h / 2})">{escape(y_label)}</text>'
    )
    for index, s in enumerate(series):
        path = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in s.points)
        dash = ' stroke-dasharray="6 4"' if s.dashed else ""
        out.append(
            f'<polyline points="{path}" fill="none" stroke="{s.colour}" stroke-width="2"{dash}/>'
        )
        for x, y in s.points:
            out.append(f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="3" fill="{s.colour}"/>')
        ly = TOP + 16 + 18 * index
        out.append(
            f'<line x1="{LEFT + 12}" x2="{LEFT + 40}" y1="{ly - 4}" y2="{ly - 4}" '
            f'stroke="{s.colour}" stroke-width="2"{dash}/>'
        )
        out.append(f'<text x="{LEFT + 46}" y="{ly}">{escape(s.label)}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"
