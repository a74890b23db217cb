"""Long audio in windows: where windows are cut, how the lyrics are split across them.

``align_span`` is driven by the stand-in for the model of tests/support/fake_align.py
(see there why a stand-in); the planner functions are pure.
"""
from __future__ import annotations

import math

import hypothesis.strategies as st
import pytest
from hypothesis import given

from sow_aligner.alignment import TimedLine
from sow_aligner.windows import TAIL_SECONDS, align_span, kept_count, lines_for_window, silences, window_end
from sow_qwen3_contract.tensors import SAMPLE_RATE
from support.fake_align import RecordingAlign, even_timing, position_clip, words


@st.composite
def voiced(draw, duration: float):
    cuts = sorted(draw(st.lists(st.floats(0.0, duration, allow_subnormal=False), max_size=30, unique=True)))
    return [(a, b) for a, b in zip(cuts[0::2], cuts[1::2]) if b > a]


def in_voice(moment: float, segments) -> bool:
    return any(a < moment < b for a, b in segments)


@given(st.data(), *(st.floats(low, high, allow_subnormal=False) for low, high in ((0, 500), (1, 900), (10, 400))))
def test_a_window_is_at_most_window_seconds_and_cut_in_a_silence_of_its_second_half(data, start, length, window):
    end = start + length
    segments = data.draw(voiced(end))
    stop = window_end(start, end, window, segments)
    assert start < stop <= min(end, start + window)
    if end <= start + window:
        assert stop == end
        return
    quiet = silences(segments, start + window / 2, start + window)
    if quiet:
        assert not in_voice(stop, segments), "cut in a silence"
        assert start + window / 2 <= stop
        longest = max(b - a for a, b in silences(segments, start, end) if b > start + window / 2 and a < start + window)
        assert any(a <= stop <= b and b - a == longest for a, b in silences(segments, start, end))
    else:
        assert stop == start + window


def test_without_voice_activity_windows_are_cut_at_the_window_length():
    assert window_end(10.0, 500.0, 180.0, None) == 190.0
    assert window_end(10.0, 500.0, 180.0, []) == 190.0
    assert window_end(10.0, 150.0, 180.0, None) == 150.0


def test_the_longest_silence_wins_and_the_later_on_a_tie():
    segments = [(0.0, 50.0), (52.0, 60.0), (70.0, 80.0), (82.0, 120.0)]
    assert window_end(0.0, 300.0, 100.0, segments) == 65.0  # 60-70 beats 50-52 (outside the half) and 80-82
    assert window_end(0.0, 300.0, 100.0, [(0.0, 60.0), (62.0, 90.0), (92.0, 200.0)]) == 91.0


def test_lines_given_follow_the_voiced_share_plus_slack():
    segments = [(0.0, 10.0), (20.0, 50.0)]  # 10 s voiced in [0, 20], 40 s in [0, 60]
    assert lines_for_window(40, 0.0, 20.0, 60.0, segments) == 10 + 3  # a quarter, plus 25 % slack
    assert lines_for_window(40, 0.0, 20.0, 60.0, None) == 14 + 4  # a third of the time without a VAD
    assert lines_for_window(3, 0.0, 20.0, 60.0, segments) == 3
    assert lines_for_window(40, 0.0, 60.0, 60.0, segments) == 40  # the last window takes all
    assert lines_for_window(40, 0.0, 20.0, 60.0, [(30.0, 40.0)]) == 2  # no voice in it: the slack only


def line(start: float, end: float, clamped: bool = False) -> TimedLine:
    return TimedLine(start, end, ("x",), (start,), (end,), (0.9,), (0,), 0.9, False, clamped)


def test_kept_lines_end_clearly_inside_and_are_not_piled_at_the_tail():
    stop = 30.0
    assert kept_count([line(1, 5), line(5, 10), line(28, 29.5), line(29.5, 30)], stop) == 2  # tail lines carried
    assert kept_count([line(1, 5), line(5, 10, clamped=True), line(12, 14)], stop) == 1  # clamped ends the kept ones
    assert kept_count([line(1, 5), line(8, 8.0), line(8, 8.01)], stop) == 1  # zero-length lines before a pile-up
    assert kept_count([line(29.5, 30), line(30, 30)], stop) == 1  # always progress: at least one line


@given(st.data(), st.floats(30.0, 200.0, allow_subnormal=False), st.integers(1, 40), st.sampled_from([10.0, 20.0, 45.0]),
       st.sampled_from([1, SAMPLE_RATE]))
def test_every_line_once_in_order_and_no_window_longer_than_allowed(data, duration, count, window, grid):
    """On a one-sample grid, and on the engine's 1 s grid, where every part the model gets (widened to whole
    seconds, which FakeSong checks) is still at most a window long."""
    lines = [f"l{i}a l{i}b" for i in range(count)]
    segments = data.draw(st.one_of(st.none(), voiced(duration)))
    align = RecordingAlign(even_timing())
    timed = align_span(align.song(position_clip(duration), grid), 0.0, duration, lines, "English", segments=segments,
                       window_seconds=window, sample_rate=SAMPLE_RATE)
    assert [t.unit_text for t in timed] == [tuple(words(text)) for text in lines]
    starts = [t.start for t in timed]
    assert starts == sorted(starts) and all(0.0 <= t.start <= t.end <= duration for t in timed)
    assert all(seconds <= window + 1 / SAMPLE_RATE for _, seconds, _ in align.calls)
    given_lines = [text for _, _, part in align.calls for text in part]
    assert given_lines[0] == lines[0] and set(given_lines) == set(lines)
    for (start, seconds, part), (next_start, _, next_part) in zip(align.calls, align.calls[1:]):
        assert next_start >= start and lines.index(next_part[0]) > lines.index(part[0]), "each window moves on"
        if grid == 1 and segments and silences(segments, start + window / 2, start + window):
            assert not in_voice(start + seconds, segments), "cut in a silence"


def test_a_line_kept_from_the_tail_is_never_passed_by_the_next_window():
    def first_line_at_the_tail(start, seconds, lines):
        """The first window piles everything on its end; the next starts its first line at once."""
        units = 2 * sum(len(words(text)) for text in lines)
        if start == 0.0:
            return [int(seconds * 1000) - 200] * units, [0.9] * units
        return even_timing()(start, seconds, lines)

    lines = [f"l{i}a l{i}b" for i in range(6)]
    timed = align_span(RecordingAlign(first_line_at_the_tail).song(position_clip(40.0)), 0.0, 40.0, lines, "English",
                       segments=None, window_seconds=20.0, sample_rate=SAMPLE_RATE)
    assert timed[0].start == pytest.approx(19.8)  # kept although in the tail: a window keeps at least one line
    starts = [t.start for t in timed]
    assert starts == sorted(starts)


def test_a_window_carries_what_piles_up_at_its_tail_to_the_next():
    def tail_pile(start, seconds, lines):
        """The first window (at 0) times all but its last two lines over its first three quarters and
        piles those two on its very end; any other window is timed evenly."""
        if start == 0.0:
            ms, confidence = even_timing()(start, seconds * 3 / 4, lines[:-2])
            return ms + [int(seconds * 1000)] * 8, confidence + [0.9] * 8
        return even_timing()(start, seconds, lines)

    lines = [f"l{i}a l{i}b" for i in range(6)]
    align = RecordingAlign(tail_pile)
    timed = align_span(align.song(position_clip(40.0)), 0.0, 40.0, lines, "English", segments=None,
                       window_seconds=20.0, sample_rate=SAMPLE_RATE)
    first, second = align.calls[0], align.calls[1]
    assert first[0] == 0.0 and first[1] == 20.0 and first[2] == lines[:5]  # 3 expected + 2 slack
    kept = 5 - 2
    assert second[2] == lines[kept:], "the piled lines go to the next window"
    assert second[0] == pytest.approx(timed[kept - 1].end, abs=1 / SAMPLE_RATE) and second[0] <= 20.0 - TAIL_SECONDS
    assert [t.unit_text[0] for t in timed] == [f"l{i}a" for i in range(6)]


@given(st.data(), st.floats(30.0, 900.0, allow_subnormal=False), st.integers(1, 150), st.sampled_from([20.0, 180.0]),
       st.sampled_from([1, SAMPLE_RATE]))
def test_a_model_piling_every_line_at_a_window_start_costs_a_bounded_number_of_windows(data, duration, count, window,
                                                                                        grid):
    """What random weights (or audio the model does not recognise) answer: every line at the window's first
    instant. Each window still moves on by half its length (``window`` less two grid steps on the 1 s grid),
    so the cost is bounded by the audio, not the lines."""
    def at_the_start(start, seconds, lines):
        units = sum(len(words(text)) for text in lines)
        return [0] * (2 * units), [0.1] * (2 * units)

    lines = [f"l{i}a l{i}b" for i in range(count)]
    segments = data.draw(st.one_of(st.none(), voiced(duration)))
    align = RecordingAlign(at_the_start)
    timed = align_span(align.song(position_clip(duration), grid), 0.0, duration, lines, "English",
                       segments=segments, window_seconds=window, sample_rate=SAMPLE_RATE)
    assert len(timed) == count
    step = grid / SAMPLE_RATE if grid > 1 else 0.0
    own = window - 2 * step  # a window's own length, at the least
    assert len(align.calls) <= 1 + max(0, math.ceil((duration - own) / (own / 2)))
    for (start, _, _), (next_start, _, _) in zip(align.calls, align.calls[1:]):
        assert next_start >= start + own / 2 - step - 1 / SAMPLE_RATE
