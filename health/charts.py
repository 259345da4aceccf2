"""The health page's charts, drawn on the server as inline SVG from ``agents_health()``'s history: no chart
library, nothing from a CDN, and the page's CSS colours them (light and dark) through class names.

Sign-ins per point are stacked bars by outcome, each outcome with a colour AND a fill pattern of its own (told
apart without colour, in print and by colour-blind eyes), the same in the legend; the agents' round trip is one
line per agent, p50 solid and p95 dashed. Times are UTC, like the rollups. The outcomes' colours live here, not in
the page's CSS: ``chart_styles()`` writes them for the light and the dark theme, and the tests check them.
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


# Per outcome: its colour on a light background, and its pattern (kind, tile size in chart units). Every known
# outcome has a colour and a pattern no other outcome has; success is the one solid fill.
OUTCOME_STYLES: dict[str, tuple[str, tuple[str, int]]] = {
    "success": ("#2e7d32", ("solid", 6)),
    "password_changed": ("#66bb6a", ("dots", 6)),
    "invalid_credentials": ("#1e63b5", ("diag", 6)),
    "password_expired": ("#00838f", ("rdiag", 6)),
    "password_must_change": ("#26a69a", ("horiz", 6)),
    "password_rejected": ("#5e35b1", ("vert", 6)),
    "account_disabled": ("#6d4c41", ("grid", 6)),
    "account_expired": ("#a1887f", ("xhatch", 6)),
    "account_locked": ("#ad1457", ("dots", 10)),
    "logon_hours": ("#9e9d24", ("diag", 10)),
    "workstation_restricted": ("#558b2f", ("rdiag", 10)),
    "unknown_domain": ("#757575", ("horiz", 10)),
    "identity_conflict": ("#311b92", ("vert", 10)),
    "session_expired": ("#90a4ae", ("grid", 10)),
    "mfa_required": ("#0288d1", ("xhatch", 10)),
    "mfa_failed": ("#ec407a", ("checker", 6)),
    "cloud_locked": ("#bf360c", ("zigzag", 6)),
    "too_many_signins": ("#8e24aa", ("ring", 6)),
    "no_agent_available": ("#d81b60", ("ring", 10)),
    "agent_error": ("#7f1d1d", ("hdash", 6)),
    "agent_timeout": ("#e53935", ("checker", 10)),
    "directory_unavailable": ("#f08c00", ("zigzag", 10)),
    "location_blocked": ("#4e342e", ("dots", 14)),
    "app_not_assigned": ("#455a64", ("diag", 14)),
}
# An outcome this table does not know yet (a newer agent's): grey, short dashes.
OTHER_STYLE = ("#9e9e9e", ("hdash", 10))
# Dark theme: each colour mixed this far towards white, so that it reads on the admin's dark background.
DARK_LIGHTEN = 0.3


def outcome_style(outcome: str) -> tuple[str, tuple[str, int]]:
    return OUTCOME_STYLES.get(outcome, OTHER_STYLE)


def _lighter(colour: str, share: float) -> str:
    channels = (int(colour[i:i + 2], 16) for i in (1, 3, 5))
    return "#" + "".join(f"{round(c + (255 - c) * share):02x}" for c in channels)


def _ink(colour: str) -> str:
    """The pattern's lines: white on a dark colour, black on a light one (WCAG's relative luminance)."""
    def linear(c: int) -> float:
        v = c / 255
        return v / 12.92 if v <= 0.03928 else ((v + 0.055) / 1.055) ** 2.4
    r, g, b = (linear(int(colour[i:i + 2], 16)) for i in (1, 3, 5))
    return "#ffffff" if 0.2126 * r + 0.7152 * g + 0.0722 * b < 0.18 else "#000000"


def _css_class(outcome: str) -> str:
    return "o-" + "".join(c if c.isalnum() or c in "_-" else "_" for c in outcome)


def chart_styles(outcomes: list[str]) -> SafeString:
    """The colours (``--c``) and pattern inks (``--ink``) of these outcomes, for the page: light, then dark when
    the system asks for it and the admin's theme switch does not say light, then dark when the switch says so.
    Written into the live part with the chart, so that an outcome new in the window comes with its colours."""
    light, dark = [], []
    for outcome in outcomes:
        colour, _ = outcome_style(outcome)
        selector = f".health .{_css_class(outcome)}"
        light.append(f"{selector} {{ --c: {colour}; --ink: {_ink(colour)}; }}")
        dark_colour = _lighter(colour, DARK_LIGHTEN)
        dark.append(f"{selector} {{ --c: {dark_colour}; --ink: {_ink(dark_colour)}; }}")
    css = "\n".join([
        *light,
        "@media (prefers-color-scheme: dark) {",
        *(f"  html:not([data-theme=\"light\"]) {rule}" for rule in dark),
        "}",
        *(f"html[data-theme=\"dark\"] {rule}" for rule in dark),
    ])
    return format_html("<style>{}</style>", mark_safe(css))  # noqa: S308 - built here from the table above


def _pattern_ink(kind: str, t: int) -> str:
    """The pattern's marks within one tile of ``t`` units, drawn in the outcome's ink."""
    h = t / 2
    lines = {
        "diag": f"M{-h},{h} L{h},{-h} M0,{t} L{t},0 M{h},{t + h} L{t + h},{h}",
        "rdiag": f"M{-h},{h} L{h},{t + h} M0,0 L{t},{t} M{h},{-h} L{t + h},{h}",
        "horiz": f"M0,{h} H{t}",
        "vert": f"M{h},0 V{t}",
        "grid": f"M0,{h} H{t} M{h},0 V{t}",
        "xhatch": f"M0,{t} L{t},0 M0,0 L{t},{t}",
        "zigzag": (f"M0,{t * 0.7:g} L{t / 4:g},{t * 0.3:g} L{h:g},{t * 0.7:g} L{t * 0.75:g},{t * 0.3:g} "
                   f"L{t},{t * 0.7:g}"),
        "hdash": f"M0,{h} H{h}",
    }
    if kind in lines:
        return f'<path class="ink" d="{lines[kind]}"/>'
    if kind == "dots":
        return f'<circle class="ink-fill" cx="{h:g}" cy="{h:g}" r="{t * 0.2:g}"/>'
    if kind == "ring":
        return f'<circle class="ink" cx="{h:g}" cy="{h:g}" r="{t * 0.25:g}"/>'
    if kind == "checker":
        return f'<path class="ink-fill" d="M0,0 H{h:g} V{h:g} H0 Z M{h:g},{h:g} H{t} V{t} H{h:g} Z"/>'
    return ""  # solid


def _pattern(pattern_id: str, outcome: str) -> str:
    _, (kind, t) = outcome_style(outcome)
    return (f'<pattern id="{pattern_id}" class="{_css_class(outcome)}" patternUnits="userSpaceOnUse" width="{t}" '
            f'height="{t}"><rect class="bg" width="{t}" height="{t}"/>{_pattern_ink(kind, t)}</pattern>')


def _pattern_ids(order: list[str]) -> dict[str, str]:
    return {outcome: f"outcome-pattern-{i}" for i, outcome in enumerate(order)}


def signins_legend(history: dict) -> SafeString:
    """The legend of ``signins_chart``: each outcome's swatch (its pattern, filled from the chart's definitions),
    name and sign-ins in the window."""
    totals = outcome_totals(history)
    ids = _pattern_ids([outcome for outcome, _ in totals])
    items = [format_html('<li class="{}" data-outcome="{}"><svg class="swatch" viewBox="0 0 14 14" width="14" '
                         'height="14" aria-hidden="true"><rect width="14" height="14" fill="url(#{})"/></svg>'
                         "{} <span class=\"n\">{}</span></li>", _css_class(outcome), outcome, ids[outcome],
                         outcome.replace("_", " "), n) for outcome, n in totals]
    return format_html('<ul class="legend" aria-label="Outcomes">{}</ul>', mark_safe("".join(items)))  # noqa: S308


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
    ids = _pattern_ids(order)
    bars = [f"<defs>{''.join(_pattern(ids[outcome], outcome) for outcome in order)}</defs>"] if order else []
    for i, point in enumerate(points):
        if not point["outcomes"]:
            continue
        x, base, rects = LEFT + i * step, TOP + plot_h, []
        for outcome in order:
            n = point["outcomes"].get(outcome, 0)
            if n:
                h = plot_h * n / top
                base -= h
                rects.append(f'<rect class="{_css_class(outcome)}" x="{x:.2f}" y="{base:.2f}" width="{width:.2f}" '
                             f'height="{h:.2f}" fill="url(#{ids[outcome]})"/>')
        summary = ", ".join(f"{o} {n}" for o, n in point["outcomes"].items())
        bars.append(f"<g><title>{_time(point['at'])} UTC: {escape(summary)}</title>{''.join(rects)}</g>")
    if not order:
        bars.append(f'<text class="empty" x="{WIDTH / 2}" y="{HEIGHT / 2}" text-anchor="middle">'
                    "No sign-ins in this window</text>")
    return _frame("Sign-ins per minute by outcome", history, top, "", "".join(bars))


# Each agent's line has a marker shape of its own as well as a colour (at both ends of each stretch of its p50),
# the same in the legend. LATENCY_SERIES (health/selectors.py) lines at most.
MARKERS = ("circle", "square", "triangle", "diamond", "plus", "cross")
OPEN_MARKERS = ("plus", "cross")  # drawn as strokes; the others are filled


def _marker(n: int, x: float, y: float) -> str:
    kind = MARKERS[n % len(MARKERS)]
    d = {
        "circle": f"M{x - 2.6:.2f},{y:.2f} a2.6,2.6 0 1,0 5.2,0 a2.6,2.6 0 1,0 -5.2,0",
        "square": f"M{x - 2.3:.2f},{y - 2.3:.2f} h4.6 v4.6 h-4.6 Z",
        "triangle": f"M{x:.2f},{y - 3.2:.2f} L{x + 3:.2f},{y + 2.2:.2f} L{x - 3:.2f},{y + 2.2:.2f} Z",
        "diamond": f"M{x:.2f},{y - 3.2:.2f} L{x + 3.2:.2f},{y:.2f} L{x:.2f},{y + 3.2:.2f} L{x - 3.2:.2f},{y:.2f} Z",
        "plus": f"M{x - 3.2:.2f},{y:.2f} H{x + 3.2:.2f} M{x:.2f},{y - 3.2:.2f} V{y + 3.2:.2f}",
        "cross": f"M{x - 2.6:.2f},{y - 2.6:.2f} L{x + 2.6:.2f},{y + 2.6:.2f} M{x - 2.6:.2f},{y + 2.6:.2f} "
                 f"L{x + 2.6:.2f},{y - 2.6:.2f}",
    }[kind]
    return f'<path class="marker m-{kind}{" open" if kind in OPEN_MARKERS else ""}" d="{d}"/>'


def latency_legend(history: dict) -> SafeString:
    """The legend of ``latency_chart``: each agent's colour, marker and name."""
    items = [format_html('<li class="s-{}" data-agent="{}"><svg class="swatch line" viewBox="0 0 22 12" width="22" '
                         'height="12" aria-hidden="true"><line x1="0" y1="6" x2="22" y2="6"/>{}</svg>{}</li>',
                         n, series["agent"], mark_safe(_marker(n, 11, 6)), series["name"])  # noqa: S308 - ours
             for n, series in enumerate(history["latency"])]
    return format_html('<ul class="legend" aria-label="Agents">{}</ul>', mark_safe("".join(items)))  # noqa: S308


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
                if key == "p50":
                    ends = {segment[0], segment[-1]}
                    shape += "".join(_marker(n, *(float(c) for c in end.split(","))) for end in sorted(ends))
                lines.append(f'<g class="s-{n} {key}"><title>{escape(agent["name"])} {key}</title>{shape}</g>')
    if not lines:
        lines.append(f'<text class="empty" x="{WIDTH / 2}" y="{HEIGHT / 2}" text-anchor="middle">'
                     "No agent answered in this window</text>")
    return _frame("Agent round trip p50 and p95, in milliseconds", history, top, " ms", "".join(lines))
