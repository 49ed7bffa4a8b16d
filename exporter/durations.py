"""Prometheus-style durations (`90s`, `15m`, `6h`, `30d`, `1h30m`) as seconds."""

from __future__ import annotations

import re

from exporter.domain import ExporterError

_UNITS = {
    "ms": 0.001,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
    "d": 86400.0,
    "w": 604800.0,
    "y": 31536000.0,
}
_PART = re.compile(r"(\d+)(ms|s|m|h|d|w|y)")


class DurationError(ExporterError, ValueError):
    """A string that is not a Prometheus duration."""


def parse_duration(text: str) -> float:
    """Return the seconds of a Prometheus duration such as `30d` or `1h30m`."""
    value = text.strip()
    if not value:
        raise DurationError("empty duration")
    position = 0
    total = 0.0
    for match in _PART.finditer(value):
        if match.start() != position:
            break
        total += int(match.group(1)) * _UNITS[match.group(2)]
        position = match.end()
    if position != len(value):
        raise DurationError(f"not a duration: {text!r} (use e.g. 90s, 15m, 6h, 30d)")
    return total


def format_duration(seconds: float) -> str:
    """Render seconds back as a Prometheus duration, the way the README writes defaults.

    Days only from a week on (`30d`, `8d`); shorter spans in hours and below (`72h`, `24h`,
    `90s`), since that is how operators think of retry and cache windows.
    """
    if seconds <= 0:
        return "0s"
    remaining = round(seconds * 1000)
    units = [("h", 3_600_000), ("m", 60_000), ("s", 1000), ("ms", 1)]
    if remaining >= 7 * 86_400_000:
        units.insert(0, ("d", 86_400_000))
    parts = []
    for unit, size in units:
        count, remaining = divmod(remaining, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)
