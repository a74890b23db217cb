"""``sow-qwen3 check``: judge an existing timing against its audio with the server's voice-activity detector.

A line's window is [start, end] for our JSON; for an LRC (starts only) it is
[start, min(next line's start, start + lrc_window_s)], the last line's window
ending at the audio's end at the latest. An LRC's lines are judged in time
order (the order a player shows them in; ``read_timing`` keeps the file's
order), our JSON's in the file's order. Flags (``unvoiced``, ``zero_length``,
``collapsed``) and the verdict follow the server's own rules and thresholds
(``sow_qwen3_contract.quality``, the thresholds read from the server).
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from sow_qwen3_contract.quality import (
    Thresholds,
    is_flagged,
    lrc_window_ends,
    mean_voiced,
    song_verdict,
    timing_flags,
    voiced_fraction,
)

from .timings import TimingFile


@dataclass(frozen=True)
class CheckedLine:
    index: int
    text: str
    start: float
    end: float  # the window's end
    voiced_fraction: float
    flags: tuple[str, ...]


@dataclass(frozen=True)
class CheckReport:
    verdict: str
    mean_voiced_fraction: float
    lines: tuple[CheckedLine, ...]

    @property
    def flagged_lines(self) -> int:
        return sum(1 for line in self.lines if is_flagged(line.flags))


def window_ends(starts: Sequence[float], ends: Sequence[float | None] | None, duration: float,
                thresholds: Thresholds) -> list[float]:
    """Each line's window end (see the module docstring): ``ends`` is None for an LRC (its lines in time order),
    else our JSON's ends (a missing end closes the window at its start)."""
    if ends is None:
        return lrc_window_ends(starts, duration, thresholds.lrc_window_s)
    return [start if end is None else end for start, end in zip(starts, ends)]


def check_timing(timing: TimingFile, segments: Sequence[tuple[float, float]], duration: float,
                 thresholds: Thresholds) -> CheckReport:
    """The report for ``timing`` given the voiced ``segments`` (seconds) of its ``duration``-second audio.

    An LRC's lines are sorted by start first; the report's lines and indices follow that order.
    """
    if timing.kind == "lrc":
        timing = timing.in_time_order()
    starts = [line.start for line in timing.lines]
    ends = window_ends(starts, None if timing.kind == "lrc" else [line.end for line in timing.lines], duration,
                       thresholds)
    voiced = [voiced_fraction(start, end, segments) for start, end in zip(starts, ends)]
    flags = timing_flags(starts, ends, voiced, thresholds)
    lines = tuple(CheckedLine(index, line.text, line.start, end, fraction, tuple(codes))
                  for index, (line, end, fraction, codes) in enumerate(zip(timing.lines, ends, voiced, flags)))
    return CheckReport(song_verdict(voiced, flags, thresholds), mean_voiced(voiced), lines)


def report_data(report: CheckReport) -> dict:
    """The ``--json`` document."""
    return {
        "verdict": report.verdict,
        "mean_voiced_fraction": None if math.isnan(report.mean_voiced_fraction) else round(report.mean_voiced_fraction, 3),
        "lines": [{"index": line.index, "text": line.text, "start": round(line.start, 3), "end": round(line.end, 3),
                   "voiced_fraction": round(line.voiced_fraction, 3), "flags": list(line.flags)}
                  for line in report.lines],
    }


def report_table(report: CheckReport) -> str:
    """A table a person reads: one row per line, then the verdict."""
    rows = [f"{'#':>3}  {'start':>8}  {'end':>8}  {'voiced':>6}  {'flags':<28}  text"]
    for line in report.lines:
        rows.append(f"{line.index:>3}  {line.start:>8.2f}  {line.end:>8.2f}  {line.voiced_fraction:>6.2f}  "
                    f"{','.join(line.flags) or '-':<28}  {line.text}")
    rows.append(f"verdict: {report.verdict} (mean voiced fraction {report.mean_voiced_fraction:.2f}, "
                f"{report.flagged_lines} of {len(report.lines)} lines flagged)")
    return "\n".join(rows) + "\n"
