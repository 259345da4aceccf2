"""An accent colour a tenant may choose: #rrggbb, and readable both ways it is used on the sign-in pages (white
text on it, the buttons; it as text on white, the links). WCAG 2's contrast ratio, which is symmetric, so one
check covers both."""

from __future__ import annotations

import re

ACCENT_PATTERN = re.compile(r"#[0-9a-f]{6}")
# WCAG 2 AA for normal text.
MIN_CONTRAST = 4.5


def _channel(value: int) -> float:
    c = value / 255
    return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4


def relative_luminance(colour: str) -> float:
    r, g, b = (int(colour[i:i + 2], 16) for i in (1, 3, 5))
    return 0.2126 * _channel(r) + 0.7152 * _channel(g) + 0.0722 * _channel(b)


def contrast_with_white(colour: str) -> float:
    """WCAG's contrast ratio between ``colour`` (#rrggbb) and white: 1 (white itself) to 21 (black)."""
    return 1.05 / (relative_luminance(colour) + 0.05)
