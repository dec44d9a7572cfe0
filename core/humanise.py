"""How core writes figures for people: durations, percentages and plain numbers.

One home for the wording, so a queue ETA on a status card, the time left until a quota resets
and the medians in a campaign report read alike. Pure functions, no I/O; an unknown value
(``None``) is written as an en dash.

A duration keeps at most two units and drops a second unit that is zero:

=====================  =====================  ===============
seconds                written as             e.g.
=====================  =====================  ===============
under 10               tenths of a second     ``0.4 s``, ``3 s``
10 to 90               whole seconds          ``40 s``
up to an hour          whole minutes          ``2 min``
under two days         hours and minutes      ``8 h 30 min``
two days and more      days and hours         ``3 d 4 h``
=====================  =====================  ===============
"""

from __future__ import annotations

__all__ = ["UNKNOWN", "duration", "number", "percent"]

UNKNOWN = "–"

_MINUTE = 60
_HOUR = 60 * _MINUTE
_DAY = 24 * _HOUR


def duration(seconds: float | None) -> str:
    """``seconds`` in words (see the table above); negative values count as zero."""
    if seconds is None:
        return UNKNOWN
    seconds = max(0.0, float(seconds))
    if seconds < 10:
        return f"{seconds:.1f}".removesuffix(".0") + " s"
    if seconds < 90:
        return f"{round(seconds)} s"
    minutes = round(seconds / _MINUTE)
    if minutes < 60:
        return f"{minutes} min"
    if seconds < 2 * _DAY:
        hours, minutes = divmod(minutes, 60)
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(round(seconds / _HOUR), 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


def percent(fraction: float | None) -> str:
    """A fraction as a percentage with one decimal: ``0.273`` → ``27.3%``."""
    return UNKNOWN if fraction is None else f"{fraction * 100:.1f}%"


def number(value: float | None, digits: int = 1) -> str:
    """A figure with thousands separators and ``digits`` decimals: ``1234.5`` → ``1,234.5``."""
    return UNKNOWN if value is None else f"{value:,.{digits}f}"
