"""Aligning audio longer than one safe pass: windows cut in silences, the lyrics split as they are sung.

Pure (no torch). One forward pass cannot place a time past classify_num x
80 ms (400 s), and the model is least reliable near that limit (the trailing
words of a long input pile onto one timestamp), so audio longer than
``window_seconds`` is aligned window after window (peak memory of one window):

* a window ends in the longest VAD silence of its second half (the later one
  on a tie), or at ``window_seconds`` when there is no silence there or the
  VAD could not be asked; every window is at most ``window_seconds`` long;
* a window is given the lines expected in it, by its share of the voiced time
  still to align (of the plain time without a VAD), plus slack;
* it keeps the leading lines that end clearly inside it (not within
  ``TAIL_SECONDS`` of its cut, not clamped at its end, the last kept one not of
  zero length); the rest are carried to the next window, which starts where
  the last kept line ends (at most ``TAIL_SECONDS`` before the cut, but never
  before that line's start), and at least half a window after the window's
  own start. A window keeps at least one line; the last window keeps all
  that remain.

The model sees a window's audio widened to the song's grid (``SongAudio.grid``:
the engine's song is encoded once, in 1 s chunks, and a window takes whole
chunks of it): from the grid point at or before the window's start to the one
at or after its cut (the song's end at the latest). So that this audio stays
within ``window_seconds``, a window's own length is ``window_seconds`` less
that widening (less than two grid steps; nothing on a one-sample grid), and
"half a window" above is half of that. The lines are still kept within the
window itself.

Every window but the last moves on by at least half its own length, so with
W = ``window_seconds`` less two grid steps, a span of S seconds costs at
most 1 + ceil((S - W) / (W / 2)) windows, whatever the model answers: a
model that piles every line into a window's first seconds (no voice it
recognises, or random weights) costs about twice the audio, not a window per
line.

Every line gets exactly one timing, in song order, with starts that never
decrease. Doubtful lines at the seams are then the business of the anchored
re-alignment (``realign``).
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Protocol

from .alignment import Alignment, TimedLine, timed_lines, within

Segments = Sequence[tuple[float, float]]


class SongAudio(Protocol):
    """One song's audio as the model takes it (``engine.EncodedSong``; a stand-in in tests)."""

    samples: int  # the song's length, in samples
    grid: int  # a part aligned starts on a multiple of this many samples, and ends on one or at the song's end

    def align(self, low: int, high: int, lines: list[str], language: str) -> Alignment:
        """``lines`` timed on samples [low, high) of the song (on the grid), times from ``low``; raises
        InvalidRequest when the lines hold nothing alignable or too much."""
        ...

TAIL_SECONDS = 1.0  # a line ending this close to a window's cut is carried to the next window
MIN_LINE_SECONDS = 0.05  # a kept line shorter than this at the end of the kept ones is carried too
SLACK_SHARE = 0.25  # extra lines given to a window: this share of the expected ones ...
MIN_SLACK_LINES = 2  # ... and at least this many


def silences(segments: Segments, start: float, end: float) -> list[tuple[float, float]]:
    """The gaps between the voiced ``segments`` (sorted, disjoint) within [start, end], clipped to it."""
    gaps, cursor = [], start
    for seg_start, seg_end in segments:
        if seg_start > cursor:
            gaps.append((cursor, min(seg_start, end)))
        cursor = max(cursor, seg_end)
        if cursor >= end:
            break
    if cursor < end:
        gaps.append((cursor, end))
    return [(a, b) for a, b in gaps if b > a]


def window_end(start: float, end: float, window_seconds: float, segments: Segments | None) -> float:
    """Where the window starting at ``start`` ends, for audio ending at ``end``.

    ``end`` when that is at most ``window_seconds`` away; else the middle of
    the longest silence (the later one on a tie) within the window's second
    half [start + window_seconds / 2, start + window_seconds]; else (no
    silence there, or ``segments`` None) start + window_seconds.
    """
    limit = start + window_seconds
    if end <= limit:
        return end
    if segments:
        # Judged on the whole silence, cut in the middle of its part within the second half.
        whole = silences(segments, start, end)
        half = start + window_seconds / 2
        candidates = [(b - a, (max(a, half) + min(b, limit)) / 2) for a, b in whole if b > half and a < limit]
        if candidates:
            return max(candidates)[1]
    return limit


def voiced_seconds(start: float, end: float, segments: Segments) -> float:
    """Seconds of [start, end] covered by the voiced ``segments``."""
    return sum(max(0.0, min(end, b) - max(start, a)) for a, b in segments)


def lines_for_window(remaining: int, start: float, stop: float, end: float, segments: Segments | None) -> int:
    """How many of the ``remaining`` lines to give the window [start, stop] of the audio [start, end].

    Its share of the voiced time in [start, end] (of the time, without a VAD
    or without voice there) times ``remaining``, rounded up, plus slack; all
    of them for the last window (stop >= end).
    """
    if stop >= end:
        return remaining
    whole = voiced_seconds(start, end, segments) if segments else 0.0
    share = voiced_seconds(start, stop, segments) / whole if whole > 0 else (stop - start) / (end - start)
    expected = math.ceil(remaining * share)
    return min(remaining, expected + max(MIN_SLACK_LINES, math.ceil(SLACK_SHARE * expected)))


def kept_count(lines: Sequence[TimedLine], stop: float) -> int:
    """How many leading ``lines`` (song time) a window cut at ``stop`` keeps (see the module doc); at least 1."""
    kept = 0
    for line in lines:
        if line.clamped or line.end > stop - TAIL_SECONDS:
            break
        kept += 1
    while kept and lines[kept - 1].end - lines[kept - 1].start < MIN_LINE_SECONDS:
        kept -= 1
    return max(1, kept)


def sounded(line: str) -> bool:
    """Whether a lyric line has something to align: a letter or a digit (CJK characters are letters)."""
    return any(character.isalnum() for character in line)


def unaligned(lines: Sequence[str], moment: float) -> list[TimedLine]:
    """Lines with nothing to align, timed as the engine times such a line: start = end = ``moment``."""
    return [TimedLine(moment, moment, (), (), (), (), (), math.nan, False, False) for _ in lines]


def on_grid(start: float, stop: float, audio: SongAudio, sample_rate: int) -> tuple[int, int]:
    """The samples [low, high) the model is given for [start, stop] seconds: widened to ``audio``'s grid, the
    song's end at the latest."""
    grid = audio.grid
    low = int(round(start * sample_rate)) // grid * grid
    high = -(-int(round(stop * sample_rate)) // grid) * grid
    return low, min(audio.samples, high)


def align_span(
    audio: SongAudio,
    start: float,
    end: float,
    lines: list[str],
    language: str,
    *,
    segments: Segments | None,
    window_seconds: float,
    sample_rate: int,
) -> list[TimedLine]:
    """``lines`` timed on [start, end] (seconds) of ``audio``, one window after another, in song time.

    One ``audio.align`` call on the whole span when, widened to the grid, it
    is at most ``window_seconds`` long. Each window's lines are kept within
    the window. A window whose lines have nothing to align, in a span with
    something to align, is not sent: its lines start and end where the
    previous line ends. InvalidRequest from ``audio.align`` propagates (so
    ``lines`` with nothing to align at all are refused by the engine, as
    before).
    """
    timed: list[TimedLine] = []
    cursor = start
    while len(timed) < len(lines):
        low, last_sample = on_grid(cursor, end, audio, sample_rate)
        # The window's own length: the model's audio, widened to the grid on both sides, fits in window_seconds.
        widening = cursor - low / sample_rate + (audio.grid - 1) / sample_rate if audio.grid > 1 else 0.0
        reach = window_seconds - widening
        stop = end if last_sample - low <= window_seconds * sample_rate else window_end(cursor, end, reach, segments)
        high = on_grid(cursor, stop, audio, sample_rate)[1]
        first = len(timed)
        count = lines_for_window(len(lines) - first, cursor, stop, end, segments)
        text = lines[first:first + count]
        # Nothing to align anywhere: the engine refuses the text (a bad request, or a run left as it was).
        if any(sounded(line) for line in text) or not any(sounded(line) for line in lines):
            part = timed_lines(audio.align(low, high, text, language), low / sample_rate)
        else:
            part = unaligned(text, timed[-1].end if timed else cursor)
        part = [within(line, cursor, stop) for line in part]
        keep = count if stop >= end else kept_count(part, stop)
        timed.extend(part[:keep])
        last = part[keep - 1]
        # Where the last kept line ends, but not in the tail, and never before that line starts;
        # at least half the window on (window_end cuts no earlier), so the windows are bounded.
        cursor = max(cursor + reach / 2, last.start, min(last.end, stop - TAIL_SECONDS))
    return timed
