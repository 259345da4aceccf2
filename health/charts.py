"""The health page's charts, drawn on the server as inline SVG from ``agents_health()``'s history: no chart
library, nothing from a CDN, and the page's CSS colours them (light and dark) through class names.

Sign-ins per point are stacked bars by outcome; the agents' round trip is one line per agent, p50 solid and p95
dashed. Times are UTC, like the rollups.
"""

from __future__ import annotations

import datetime
import math

from django.utils.html import escape, format_html
from django.utils.safestring import SafeString, mark_safe

# About the size the page shows them at on a laptop, so that 11-unit labels read as 11 pixels.
WIDTH, HEIGHT = 480, 190
LEFT, RIGHT, TOP, BOTTOM = 48, 8, 10, 22
# Bottom to top: what went well, what the user got wrong, then what the portal or the agents failed at, on top
# where a spike shows first. Outcomes not listed sit between the last two groups, in alphabetical order.
STACK_FIRST = ("success", "password_changed", "invalid_credentials")
STACK_LAST = ("cloud_locked", "too_many_signins", "no_agent_available", "agent_error", "agent_timeout",
              "directory_unavailable")


def _nice_ceiling(value: float) -> float:
    """The smallest of 1, 2, 2.5, 5 × 10^k at or above ``value``: an axis maximum that reads well."""
    if value <= 0:
        return 1
    power = 10 ** math.floor(math.log10(value))
    return next(step * power for step in (1, 2, 2.5, 5, 10) if step * power >= value)


def _number(value: float) -> str:
    return f"{value:g}"


def _time(iso: str) -> str:
    return datetime.datetime.fromisoformat(iso).strftime("%H:%M")


def _frame(label: str, history: dict, top: float, unit: str, body: str) -> SafeString:
    """The axes around a plot: gridlines at 0, half and ``top``, labelled at 0 and ``top`` (half of a count
    may be no count at all); the start, middle and end times."""
    plot_h = HEIGHT - TOP - BOTTOM
    parts = []
    for fraction in (0, 0.5, 1):
        y = TOP + plot_h * (1 - fraction)
        parts.append(f'<line class="grid" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}"/>')
        if fraction != 0.5:
            parts.append(f'<text class="axis" x="{LEFT - 4}" y="{y + 4:.1f}" text-anchor="end">'
                         f"{_number(top * fraction)}{unit}</text>")
    starts = [point["at"] for point in history["signins"]]
    if starts:
        for at, x, anchor in ((starts[0], LEFT, "start"), (starts[len(starts) // 2], (LEFT + WIDTH - RIGHT) / 2,
                                                          "middle"), (history["end"], WIDTH - RIGHT, "end")):
            parts.append(f'<text class="axis" x="{x:.1f}" y="{HEIGHT - 6}" text-anchor="{anchor}">{_time(at)}</text>')
    return format_html('<svg class="chart" viewBox="0 0 {} {}" role="img" aria-label="{}">{}{}</svg>',
                       WIDTH, HEIGHT, label, mark_safe("".join(parts)), mark_safe(body))  # noqa: S308 - built here


def outcome_totals(history: dict) -> list[tuple[str, int]]:
    """Each outcome of the window with its sign-ins, in stacking order (the legend)."""
    totals: dict[str, int] = {}
    for point in history["signins"]:
        for outcome, n in point["outcomes"].items():
            totals[outcome] = totals.get(outcome, 0) + n
    return [(outcome, totals[outcome]) for outcome in _stack_order(totals)]


def _stack_order(outcomes) -> list[str]:
    middle = sorted(o for o in outcomes if o not in STACK_FIRST and o not in STACK_LAST)
    return [o for o in STACK_FIRST if o in outcomes] + middle + [o for o in STACK_LAST if o in outcomes]


def signins_chart(history: dict) -> SafeString:
    """Stacked bars: the sign-ins of each point by outcome."""
    points = history["signins"]
    order = [outcome for outcome, _ in outcome_totals(history)]
    top = _nice_ceiling(max((sum(p["outcomes"].values()) for p in points), default=0))
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    step = plot_w / max(1, len(points))
    width = max(step - 0.5, 0.5)
    bars = []
    for i, point in enumerate(points):
        if not point["outcomes"]:
            continue
        x, base, rects = LEFT + i * step, TOP + plot_h, []
        for outcome in order:
            n = point["outcomes"].get(outcome, 0)
            if n:
                h = plot_h * n / top
                base -= h
                rects.append(f'<rect class="o-{escape(outcome)}" x="{x:.2f}" y="{base:.2f}" width="{width:.2f}" '
                             f'height="{h:.2f}"/>')
        summary = ", ".join(f"{o} {n}" for o, n in point["outcomes"].items())
        bars.append(f"<g><title>{_time(point['at'])} UTC: {escape(summary)}</title>{''.join(rects)}</g>")
    if not bars:
        bars.append(f'<text class="empty" x="{WIDTH / 2}" y="{HEIGHT / 2}" text-anchor="middle">'
                    "No sign-ins in this window</text>")
    return _frame("Sign-ins per minute by outcome", history, top, "", "".join(bars))


def latency_chart(history: dict) -> SafeString:
    """One line per agent: its round trip's p50 (solid) and p95 (dashed), broken where it answered nothing."""
    index = {point["at"]: i for i, point in enumerate(history["signins"])}
    series = history["latency"]
    top = _nice_ceiling(max((p["p95"] or p["p50"] for s in series for p in s["points"]), default=0))
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    step = plot_w / max(1, len(index))
    lines = []
    for n, agent in enumerate(series):
        for key in ("p50", "p95"):
            segments: list[list[str]] = []
            previous = None
            for point in agent["points"]:
                i = index.get(point["at"])
                if i is None or point[key] is None:
                    continue
                if previous is None or i != previous + 1:
                    segments.append([])
                previous = i
                y = TOP + plot_h * (1 - min(point[key], top) / top)
                segments[-1].append(f"{LEFT + (i + 0.5) * step:.2f},{y:.2f}")
            for segment in segments:
                shape = (f'<polyline points="{" ".join(segment)}"/>' if len(segment) > 1 else
                         '<circle cx="{}" cy="{}" r="2.5"/>'.format(*segment[0].split(",")))
                lines.append(f'<g class="s-{n} {key}"><title>{escape(agent["name"])} {key}</title>{shape}</g>')
    if not lines:
        lines.append(f'<text class="empty" x="{WIDTH / 2}" y="{HEIGHT / 2}" text-anchor="middle">'
                     "No agent answered in this window</text>")
    return _frame("Agent round trip p50 and p95, in milliseconds", history, top, " ms", "".join(lines))
