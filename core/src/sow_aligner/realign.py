"""The rules of anchored re-alignment: which lines are re-aligned, on what audio, and when the new times win.

Pure (no torch). Lines without a flag that counts (``quality.is_flagged``)
are anchors and never move; once a line is an anchor it stays one. Each
maximal run of other lines is re-aligned alone, on the audio from the
previous anchor's end to the next anchor's start (song start and end at the
edges), widened by ``MARGIN_SECONDS`` and, where the cut then falls in a
voiced segment whose edge is within ``SNAP_SECONDS``, moved out to that edge
(into the silence). The new times are kept within [previous anchor's end,
next anchor's start] and win only when the whole song, judged again, has
fewer flagged lines (a run changes its own lines' flags and, through
``collapsed``, the next line's); on a tie, when the run's mean voiced
fraction is higher.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

from sow_qwen3_contract.quality import is_flagged

from .alignment import TimedLine
from .evidence import Judgement
from .windows import Segments

MARGIN_SECONDS = 0.5  # audio added on each side of a run's span
SNAP_SECONDS = 2.0  # a cut inside voice moves out to the voice's edge when that is this near
MIN_SPAN_SECONDS = 0.5  # a run with less room than this between its anchors is left as it is


def anchors_after(judgement: Judgement, anchors: Sequence[bool]) -> list[bool]:
    """The anchors once ``judgement`` is known: the old ones and every line it does not flag."""
    return [old or not is_flagged(codes) for old, codes in zip(anchors, judgement.line_flags)]


def runs(anchors: Sequence[bool]) -> list[tuple[int, int]]:
    """The maximal runs [first, stop) of lines that are not anchors, in order."""
    found, first = [], None
    for index, anchor in enumerate([*anchors, True]):
        if not anchor and first is None:
            first = index
        elif anchor and first is not None:
            found.append((first, index))
            first = None
    return found


def room(lines: Sequence[TimedLine], first: int, stop: int, duration: float) -> tuple[float, float]:
    """The time the run [first, stop) may occupy: previous anchor's end (0) to next anchor's start (``duration``)."""
    low = lines[first - 1].end if first > 0 else 0.0
    high = lines[stop].start if stop < len(lines) else duration
    return low, high


def out_of_voice(moment: float, segments: Segments | None, direction: int) -> float:
    """``moment`` moved to the edge of the voiced segment it lies in, that edge being ``direction``
    (-1 earlier, +1 later) and within SNAP_SECONDS; else ``moment``."""
    for start, end in segments or ():
        if start < moment < end:
            edge = start if direction < 0 else end
            return edge if abs(edge - moment) <= SNAP_SECONDS else moment
    return moment


def audio_span(low: float, high: float, duration: float, segments: Segments | None) -> tuple[float, float]:
    """The audio [start, end] on which a run with room [low, high] is re-aligned."""
    start = max(0.0, out_of_voice(low - MARGIN_SECONDS, segments, -1))
    end = min(duration, out_of_voice(high + MARGIN_SECONDS, segments, +1))
    return start, end


def flagged_lines(judgement: Judgement) -> int:
    """The number of lines with a flag that counts against the song."""
    return sum(1 for codes in judgement.line_flags if is_flagged(codes))


def run_voiced(judgement: Judgement, first: int, stop: int) -> float:
    """The mean voiced fraction of lines [first, stop); NaN when voice activity was not measured."""
    values = judgement.line_voiced[first:stop]
    return sum(values) / len(values) if values else math.nan


def better(new: Judgement, old: Judgement, first: int, stop: int) -> bool:
    """Whether the song judged ``new`` (run [first, stop) re-aligned) beats the song judged ``old``."""
    if flagged_lines(new) != flagged_lines(old):
        return flagged_lines(new) < flagged_lines(old)
    return run_voiced(new, first, stop) > run_voiced(old, first, stop)  # False for NaN
