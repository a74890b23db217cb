"""One song's lines judged as ``sow-qwen3 check`` judges them, for the review page's live evidence.

The rules are the contract's (``sow_qwen3_contract.quality``) with the server's
thresholds; nothing here decides a flag on its own. A line's window is
[start, end] when the song's output is our JSON and the LRC window
([start, min(next start, start + lrc_window_s)]) when it is an LRC. The
aligner's own doubts about its times (``repaired``, ``clamped``, and
``low_confidence`` from its confidence) hold only while a line keeps the times
the aligner gave it: a line set by hand has no confidence and no such flag.
Without voice activity (no server reached, or its silero_vad failed), a line
that keeps the aligner's times keeps the voiced fraction recorded in the JSON;
a line set by hand, or one of an LRC, is then ``vad_unavailable``.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

from sow_qwen3_contract.quality import (
    CLAMPED,
    LOW_CONFIDENCE,
    REPAIRED,
    Thresholds,
    in_order,
    is_flagged,
    mean_voiced,
    song_verdict,
    timing_flags,
    voiced_fraction,
)
from sow_qwen3_contract.response import SongQuality

from ..check import window_ends

MODEL_FLAGS = (REPAIRED, CLAMPED)  # the aligner's flags about its own times, kept while the times are kept
SAME_TIME_S = 0.0005  # times closer than this are the same (files hold milliseconds)


@dataclass(frozen=True)
class Timed:
    """One line's times and what the aligner said about them (None / () when it said nothing)."""

    text: str
    start: float
    end: float | None  # None: an LRC line (starts only)
    confidence: float | None = None
    model_flags: tuple[str, ...] = ()
    edited: bool = False  # the times differ from the aligner's output
    recorded_voiced: float | None = None  # the JSON's voiced fraction for these times (used without a VAD)

    def same_times(self, other: Timed) -> bool:
        """Whether ``other`` has this line's start and end, to the millisecond."""
        if abs(self.start - other.start) >= SAME_TIME_S:
            return False
        if self.end is None or other.end is None:
            return self.end is None and other.end is None
        return abs(self.end - other.end) < SAME_TIME_S

    def moved(self, start: float, end: float | None) -> Timed:
        """This line at new times, set by hand: no confidence, no flag of the aligner."""
        return replace(self, start=start, end=end, confidence=None, model_flags=(), edited=True,
                       recorded_voiced=None)


@dataclass(frozen=True)
class JudgedLine:
    index: int
    text: str
    start: float
    end: float  # the window's end (see the module docstring)
    flags: tuple[str, ...]
    voiced_fraction: float | None  # None: voice activity not measured
    confidence: float | None
    edited: bool

    def data(self) -> dict:
        """The line as the API shows it (times and fractions rounded to the millisecond; ``flagged``: a flag
        that counts against the song, ``quality.is_flagged``)."""
        return {"index": self.index, "text": self.text, "start": round(self.start, 3), "end": round(self.end, 3),
                "flags": list(self.flags), "voiced_fraction": rounded(self.voiced_fraction),
                "confidence": rounded(self.confidence), "edited": self.edited, "flagged": is_flagged(self.flags)}


@dataclass(frozen=True)
class Judgement:
    verdict: str
    mean_voiced_fraction: float | None
    lines: tuple[JudgedLine, ...]

    @property
    def flagged_lines(self) -> int:
        return sum(1 for line in self.lines if is_flagged(line.flags))

    @property
    def quality(self) -> SongQuality:
        """The song's judgement as quality.csv and the JSON's ``quality`` carry it."""
        return SongQuality(self.verdict, self.mean_voiced_fraction, self.flagged_lines)


def judge(lines: Sequence[Timed], duration: float, segments: Sequence[tuple[float, float]] | None,
          thresholds: Thresholds) -> Judgement:
    """The flags, voiced fractions and verdict of ``lines`` (in song order) over ``duration`` seconds of audio.

    ``segments`` are the voiced segments (seconds); None when voice activity
    could not be measured: a line's recorded fraction stands in where it has
    one, else the rules answer with ``vad_unavailable``.
    """
    starts = [line.start for line in lines]
    lrc = bool(lines) and lines[0].end is None
    ends = window_ends(starts, None if lrc else [line.end for line in lines], duration, thresholds)
    voiced: list[float | None] = ([line.recorded_voiced for line in lines] if segments is None else
                                  [voiced_fraction(start, end, segments) for start, end in zip(starts, ends)])
    flags = timing_flags(starts, ends, voiced, thresholds)
    for codes, line in zip(flags, lines):
        codes.extend(line.model_flags)
        if line.confidence is not None and line.confidence < thresholds.low_confidence_below:
            codes.append(LOW_CONFIDENCE)
    flags = [in_order(codes) for codes in flags]
    judged = tuple(
        JudgedLine(index, line.text, line.start, end, tuple(codes), voiced[index], line.confidence, line.edited)
        for index, (line, end, codes) in enumerate(zip(lines, ends, flags)))
    mean = mean_voiced(voiced)
    return Judgement(song_verdict(voiced, flags, thresholds), None if math.isnan(mean) else mean, judged)


def rounded(value: float | None) -> float | None:
    """``value`` to 3 decimals; None stays None."""
    return None if value is None else round(value, 3)
