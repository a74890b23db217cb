"""One alignment's result, and the same result cut into lines so that parts of a song can be put together.

Pure (no torch). ``AlignmentEngine.align`` returns an ``Alignment`` for the
audio it was given, built from its forward pass's timestamp slots by
``alignment_from_slots``; ``timed_lines`` cuts it into one ``TimedLine`` per lyric
line, shifted into song time, and ``joined`` puts lines from any number of
alignments back into one song-long ``Alignment``. ``joined(timed_lines(a))``
is ``a`` field for field (same values, no rounding), which is what keeps a
song aligned in one pass bit-identical to today's single pass.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from .evidence import SlotEvidence, slot_evidence
from .line_timing import LineTimes, clamp, line_times


@dataclass(frozen=True)
class Alignment:
    """One alignment: line times plus the unit-level detail behind them, in the aligned audio's time."""

    lines: LineTimes
    unit_text: list[str]
    unit_start: list[float]
    unit_end: list[float]
    unit_line: list[int]
    duration: float
    evidence: SlotEvidence


def alignment_from_slots(
    units_per_line: Sequence[int],
    unit_text: list[str],
    repaired_ms: Sequence[int],
    raw_ms: Sequence[int],
    confidence: Sequence[float],
    duration: float,
) -> Alignment:
    """The Alignment of ``duration`` seconds of audio from its 2 * units timestamp slots (start, end interleaved).

    ``unit_text`` lists the units line after line (``units_per_line`` of each);
    ``repaired_ms`` are the slot times after the monotonic repair, ``raw_ms``
    before it, ``confidence`` each slot's probability. Unit times are the
    repaired ones in seconds to the millisecond, clamped to [0, duration];
    line times follow ``line_times``; the evidence is ``slot_evidence``'s.
    """
    starts = [round(ms / 1000.0, 3) for ms in repaired_ms[0::2]]
    ends = [round(ms / 1000.0, 3) for ms in repaired_ms[1::2]]
    return Alignment(
        lines=line_times(units_per_line, starts, ends, duration),
        unit_text=list(unit_text),
        unit_start=[clamp(t, 0.0, duration) for t in starts],
        unit_end=[clamp(t, 0.0, duration) for t in ends],
        unit_line=[index for index, count in enumerate(units_per_line) for _ in range(count)],
        duration=duration,
        evidence=slot_evidence(units_per_line, confidence, raw_ms, repaired_ms, duration),
    )


@dataclass(frozen=True)
class TimedLine:
    """One lyric line's times, units and evidence (unit fields are parallel tuples)."""

    start: float
    end: float
    unit_text: tuple[str, ...]
    unit_start: tuple[float, ...]
    unit_end: tuple[float, ...]
    unit_confidence: tuple[float, ...]
    unit_repaired: tuple[int, ...]
    confidence: float  # NaN for a line without units
    repaired: bool
    clamped: bool  # a unit time lay past the end of the audio the line was aligned on


def shifted(seconds: float, offset: float) -> float:
    """``seconds`` moved by ``offset``, to the millisecond (unchanged, unrounded, when ``offset`` is 0)."""
    return seconds if offset == 0 else round(seconds + offset, 3)


def timed_lines(alignment: Alignment, offset: float = 0.0) -> list[TimedLine]:
    """``alignment`` cut into its lines, every time moved by ``offset`` seconds."""
    evidence = alignment.evidence
    units_of: list[list[int]] = [[] for _ in alignment.lines.starts]
    for unit, line in enumerate(alignment.unit_line):
        units_of[line].append(unit)
    lines = []
    for index, (start, end, units) in enumerate(zip(alignment.lines.starts, alignment.lines.ends, units_of)):
        lines.append(TimedLine(
            start=shifted(start, offset),
            end=shifted(end, offset),
            unit_text=tuple(alignment.unit_text[u] for u in units),
            unit_start=tuple(shifted(alignment.unit_start[u], offset) for u in units),
            unit_end=tuple(shifted(alignment.unit_end[u], offset) for u in units),
            unit_confidence=tuple(evidence.unit_confidence[u] for u in units),
            unit_repaired=tuple(evidence.unit_repaired[u] for u in units),
            confidence=evidence.line_confidence[index],
            repaired=evidence.line_repaired[index],
            clamped=evidence.line_clamped[index],
        ))
    return lines


def within(line: TimedLine, low: float, high: float) -> TimedLine:
    """``line`` with its start and every unit time kept within [low, high], its end within [start, high]."""
    start = clamp(line.start, low, high)
    return replace(
        line,
        start=start,
        end=clamp(line.end, start, high),
        unit_start=tuple(clamp(t, low, high) for t in line.unit_start),
        unit_end=tuple(clamp(t, low, high) for t in line.unit_end),
    )


def joined(lines: Sequence[TimedLine], duration: float) -> Alignment:
    """One song-long Alignment of ``lines`` (in song order, song time) over ``duration`` seconds."""
    units = [(index, u) for index, line in enumerate(lines) for u in range(len(line.unit_text))]
    return Alignment(
        lines=LineTimes(starts=[line.start for line in lines], ends=[line.end for line in lines]),
        unit_text=[lines[i].unit_text[u] for i, u in units],
        unit_start=[lines[i].unit_start[u] for i, u in units],
        unit_end=[lines[i].unit_end[u] for i, u in units],
        unit_line=[i for i, _ in units],
        duration=duration,
        evidence=SlotEvidence(
            unit_confidence=[lines[i].unit_confidence[u] for i, u in units],
            unit_repaired=[lines[i].unit_repaired[u] for i, u in units],
            line_confidence=[line.confidence for line in lines],
            line_repaired=[line.repaired for line in lines],
            line_clamped=[line.clamped for line in lines],
        ),
    )

