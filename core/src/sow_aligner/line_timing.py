"""Map per-unit alignment times onto lyric lines."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class LineTimes:
    """Start and end (seconds) of each lyric line, in line order."""

    starts: list[float]
    ends: list[float]


def clamp(value: float, low: float, high: float) -> float:
    """``value`` limited to [low, high]."""
    return min(max(value, low), high)


def line_times(
    units_per_line: Sequence[int],
    unit_starts: Sequence[float],
    unit_ends: Sequence[float],
    duration: float,
) -> LineTimes:
    """Line times from unit times, the units being listed line after line.

    Contract:
      * ``sum(units_per_line) == len(unit_starts) == len(unit_ends)``;
      * every time is clamped to [0, duration];
      * a line with units starts at its first unit's start and ends at its
        last unit's end;
      * a line with no unit (punctuation only) gets the previous line's end
        as start and end (0 for the first line);
      * starts never decrease, and no line ends before it starts (these hold
        by themselves for monotonic unit times, as qwen-asr's repair gives;
        they are enforced for any input).
    """
    if sum(units_per_line) != len(unit_starts) or len(unit_starts) != len(unit_ends):
        raise ValueError(
            f"{sum(units_per_line)} units over the lines but "
            f"{len(unit_starts)} starts and {len(unit_ends)} ends"
        )
    starts: list[float] = []
    ends: list[float] = []
    cursor = 0
    previous_start = 0.0
    previous_end = 0.0
    for count in units_per_line:
        if count:
            start = clamp(unit_starts[cursor], 0.0, duration)
            end = clamp(unit_ends[cursor + count - 1], 0.0, duration)
            cursor += count
        else:
            start = end = previous_end
        start = max(start, previous_start)
        end = max(end, start)
        starts.append(start)
        ends.append(end)
        previous_start, previous_end = start, end
    return LineTimes(starts=starts, ends=ends)
