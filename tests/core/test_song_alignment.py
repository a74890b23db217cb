"""The song pipeline's rules (pass 1, windows, anchored re-alignment), driven by a stand-in for the model.

The fakes of tests/support/fake_align.py take the model's place: the rules
are about which audio and text each pass gets and which times are kept, and
only a stand-in can be made to answer with chosen (or arbitrary) timings.
The judge is the real one with config.pbtxt's thresholds. The same rules run
end to end through Triton in tests/test_server_realign.py.
"""
from __future__ import annotations

from functools import partial

import hypothesis.strategies as st
import pytest
from hypothesis import given

from sow_aligner.errors import InvalidRequest
from sow_aligner.evidence import Judgement, judge
from sow_aligner.realign import better
from sow_aligner.song_alignment import align_song
from sow_aligner.timestamps import fix_timestamp
from sow_qwen3_contract.quality import is_flagged
from sow_qwen3_contract.tensors import SAMPLE_RATE
from support.fake_align import RecordingAlign, even_timing, position_clip, words
from support.song import config_thresholds

JUDGE = partial(judge, thresholds=config_thresholds())
nan = float("nan")
LANGUAGE = "English"


def run(clip, lines, align, segments, passes, window=180.0, grid=1):
    return align_song(align.song(clip, grid), lines, LANGUAGE, segments=segments, judge=JUDGE,
                      realign_passes=passes, window_seconds=window)


def flagged(song) -> int:
    return sum(1 for codes in song.judgement.line_flags if is_flagged(codes))


def answer(song) -> str:
    """What the response says (repr is exact for floats and shows NaN)."""
    return repr((song.alignment, song.judgement, song.line_pass))


def line_record(song, index):
    """Everything the response says about one line, as text (repr is exact for floats and shows NaN)."""
    a = song.alignment
    units = [u for u, line in enumerate(a.unit_line) if line == index]
    return repr((a.lines.starts[index], a.lines.ends[index], [a.unit_text[u] for u in units],
                 [a.unit_start[u] for u in units], [a.unit_end[u] for u in units],
                 [a.evidence.unit_confidence[u] for u in units], [a.evidence.unit_repaired[u] for u in units],
                 a.evidence.line_confidence[index], a.evidence.line_repaired[index], a.evidence.line_clamped[index]))


# --- hypothesis: arbitrary model answers -----------------------------------------------------------

@st.composite
def scenarios(draw):
    count = draw(st.integers(1, 9))
    lines = [" ".join(f"l{i}w{k}" for k in range(draw(st.integers(0, 3)))) or "-" for i in range(count)]
    if not any(words(line) for line in lines):
        lines[0] = "l0w0"
    duration = draw(st.floats(4.0, 70.0, allow_subnormal=False))
    if draw(st.booleans()):
        cuts = sorted(draw(st.lists(st.floats(0.0, duration, allow_subnormal=False), min_size=0, max_size=12, unique=True)))
        segments = [(round(a, 3), round(b, 3)) for a, b in zip(cuts[0::2], cuts[1::2]) if b - a > 0.01]
    else:
        segments = None
    return lines, duration, segments, draw(st.integers(0, 3)), draw(st.sampled_from([10.0, 15.0, 25.0, 180.0]))


def drawn_timing(data):
    """Arbitrary slot times (some past the part's end) and confidences, repaired as the engine repairs them;
    drawn once per distinct call, so two runs of the pipeline see the same model."""
    answers = {}

    def timing(start, seconds, lines):
        key = (start, seconds, tuple(lines))
        if key not in answers:
            slots = 2 * sum(len(words(line)) for line in lines)
            raw = data.draw(st.lists(st.integers(0, int((seconds + 1.0) * 1000)), min_size=slots, max_size=slots))
            confidence = data.draw(st.lists(st.floats(0.05, 1.0, allow_subnormal=False), min_size=slots, max_size=slots))
            answers[key] = (fix_timestamp(raw), confidence)
        return answers[key]
    return timing


@given(scenarios(), st.data(), st.sampled_from([1, SAMPLE_RATE]))
def test_guarantees_hold_for_any_model_answer(scenario, data, grid):
    """On a one-sample grid, and on the engine's (1 s: every part widened to whole seconds of the song's
    encoding, which FakeSong checks)."""
    lines, duration, segments, passes, window = scenario
    clip = position_clip(duration)
    align = RecordingAlign(drawn_timing(data))
    single = run(clip, lines, align, segments, 0, window, grid)
    song = run(clip, lines, align, segments, passes, window, grid)
    starts, ends = song.alignment.lines.starts, song.alignment.lines.ends
    assert len(starts) == len(lines) == len(song.line_pass) == len(song.judgement.line_flags)
    assert all(a <= b for a, b in zip(starts, starts[1:])), "starts never decrease"
    assert all(s <= e for s, e in zip(starts, ends))
    assert [song.alignment.unit_text[u] for u in range(len(song.alignment.unit_text))] == \
        [w for line in lines for w in words(line)], "every unit once, in song order"
    assert song.alignment.unit_line == sorted(song.alignment.unit_line)
    assert flagged(song) <= flagged(single), "never more flagged lines than pass 1"
    assert set(song.line_pass) <= set(range(1, passes + 2))
    assert single.line_pass == [1] * len(lines)
    for index, codes in enumerate(single.judgement.line_flags):
        if not is_flagged(codes):
            assert song.line_pass[index] == 1 and line_record(song, index) == line_record(single, index), \
                f"anchor {index} moved"
    again = JUDGE(starts, ends, song.alignment.evidence, segments)
    assert repr(again) == repr(song.judgement), "the judgement is the final song's"
    assert all(seconds <= window + 1 / SAMPLE_RATE for _, seconds, _ in align.calls), "no pass longer than a window"
    assert song.model_seconds == [seconds for _, seconds, _ in align.calls[len(align.calls) - len(song.model_seconds):]]


@given(scenarios(), st.data())
def test_zero_passes_is_todays_single_pass(scenario, data):
    lines, duration, segments, _, _ = scenario
    clip = position_clip(duration)
    align = RecordingAlign(drawn_timing(data))
    song = run(clip, lines, align, segments, 0)  # at most 70 s: one window of 180 s
    today = align(0, len(clip), lines, LANGUAGE)
    assert repr(song.alignment) == repr(today)
    assert repr(song.judgement) == repr(JUDGE(today.lines.starts, today.lines.ends, today.evidence, segments))
    assert len(align.calls) == 2 and align.calls[0] == align.calls[1]


# --- chosen model answers ----------------------------------------------------------------------------

LINES = ["a b", "c d", "e f", "g h", "i j"]


def test_nothing_flagged_after_pass_1_means_no_second_pass():
    clip = position_clip(10.0)
    align = RecordingAlign(even_timing(0.9))
    song = run(clip, LINES, align, [(0.0, 10.0)], 2)
    assert flagged(song) == 0 and len(align.calls) == 1
    assert answer(song) == answer(run(clip, LINES, RecordingAlign(even_timing(0.9)), [(0.0, 10.0)], 0))


def piled_then_right(start, seconds, lines):
    """Pass 1 (the whole clip) piles lines 2-3 onto 5.0 s; any shorter part is timed evenly."""
    if start == 0.0 and lines == LINES:
        ms = [0, 900, 1000, 1800, 2000, 2900, 3000, 3800, *[5000] * 8, 8000, 8900, 9000, 9800]  # 2 slots a unit
        return ms, [0.9] * 20
    return even_timing(0.9)(start, seconds, lines)


def test_a_piled_run_is_realigned_between_its_anchors_and_kept():
    clip, segments = position_clip(10.0), [(0.0, 3.9), (4.0, 8.2), (8.6, 10.0)]  # no voice edge near the cuts
    align = RecordingAlign(piled_then_right)
    single = run(clip, LINES, align, segments, 0)
    song = run(clip, LINES, align, segments, 2)
    assert [bool(is_flagged(c)) for c in single.judgement.line_flags] == [False, False, True, True, False]
    assert song.line_pass == [1, 1, 2, 2, 1]
    assert flagged(song) == 0
    # the run's audio: previous anchor's end (3.8) to next anchor's start (8.0), widened by the margin
    assert align.calls[-1][2] == ["e f", "g h"]
    assert align.calls[-1][0] == pytest.approx(3.3) and align.calls[-1][0] + align.calls[-1][1] == pytest.approx(8.5)
    starts = song.alignment.lines.starts
    assert 3.8 <= starts[2] < starts[3] <= 8.0
    for anchor in (0, 1, 4):
        assert line_record(song, anchor) == line_record(single, anchor)


def test_a_cut_inside_voice_moves_out_to_the_silence():
    clip = position_clip(10.0)
    segments = [(0.0, 3.0), (3.2, 4.1), (7.9, 10.0)]  # 3.3 and 8.5 lie in voice; 3.2 and 10.0 are its edges
    align = RecordingAlign(piled_then_right)
    run(clip, LINES, align, segments, 1)
    start, seconds, lines = align.calls[-1]
    assert lines == ["e f", "g h"]
    assert start == pytest.approx(3.2) and start + seconds == pytest.approx(10.0)


def test_a_realignment_refused_as_invalid_keeps_pass_1():
    def refuse_parts(start, seconds, lines):
        if start > 0:
            raise InvalidRequest("audio too short for its text")
        return piled_then_right(start, seconds, lines)

    clip = position_clip(10.0)
    song = run(clip, LINES, RecordingAlign(refuse_parts), [(0.0, 10.0)], 2)
    assert answer(song) == answer(run(clip, LINES, RecordingAlign(piled_then_right), [(0.0, 10.0)], 0))
    assert song.model_seconds == [10.0, pytest.approx(6.7)], "the refused re-alignment was tried"


def always_piled(start, seconds, lines):
    """Everything on the part's middle: every line flagged (zero length)."""
    units = 2 * sum(len(words(line)) for line in lines)
    return [int(seconds * 500)] * units, [0.9] * units


def test_new_times_that_are_not_better_are_dropped_and_end_the_repair():
    def piled_then_piled(start, seconds, lines):
        return piled_then_right(start, seconds, lines) if start == 0.0 else always_piled(start, seconds, lines)

    clip = position_clip(10.0)
    align = RecordingAlign(piled_then_piled)
    song = run(clip, LINES, align, [(0.0, 10.0)], 3)
    assert song.line_pass == [1] * 5
    assert len(align.calls) == 2, "a pass that keeps nothing ends the repair"
    assert song.describe() == "2 model passes over 16.7 s of audio (longest 10.0 s), 0 of 5 lines re-aligned"


def test_lyrics_with_nothing_to_align_are_refused_by_the_engine():
    with pytest.raises(InvalidRequest, match="nothing alignable"):
        run(position_clip(10.0), ["-", "!"], RecordingAlign(even_timing()), None, 2)
    with pytest.raises(InvalidRequest, match="nothing alignable"):
        run(position_clip(100.0), ["-"] * 30, RecordingAlign(even_timing()), None, 2, window=20.0)


def test_a_song_without_anchors_is_not_aligned_again_on_the_same_audio():
    clip = position_clip(10.0)
    align = RecordingAlign(always_piled)
    song = run(clip, ["a", "b", "c"], align, [(0.0, 10.0)], 2)
    assert [bool(is_flagged(codes)) for codes in song.judgement.line_flags] == [True, True, True]
    assert len(align.calls) == 1 and song.line_pass == [1, 1, 1]


# --- the measure of "better" ------------------------------------------------------------------------

def judged(flags, voiced):
    return Judgement(line_voiced=voiced, line_flags=flags, song_voiced=float("nan"), verdict="review")


OLD_FLAGS = [["unvoiced"], ["zero_length"], []]  # 2 flagged lines; the run is line 1


@pytest.mark.parametrize("new_flags, new_voiced, old_voiced, expected", [
    ([[], [], ["unvoiced"]], [0.9, 0.2, 0.2], [0.2, 0.5, 0.9], True),  # fewer flagged lines win, even less voiced
    ([["collapsed"], ["zero_length"], ["unvoiced"]], [1.0] * 3, [0.2, 0.5, 0.9], False),  # more lose, even more voiced
    ([["unvoiced"], [], ["collapsed"]], [0.2, 0.9, 0.9], [0.2, 0.5, 0.9], True),  # as many: the run's voice decides
    ([["unvoiced"], [], ["collapsed"]], [0.2, 0.5, 0.9], [0.2, 0.5, 0.9], False),  # ... an equal one keeps the old
    ([["collapsed"], ["zero_length"], ["vad_unavailable"]], [nan] * 3, [nan] * 3, False),  # no VAD: keeps the old
])
def test_new_times_win_by_fewer_flagged_lines_then_more_voice(new_flags, new_voiced, old_voiced, expected):
    assert better(judged(new_flags, new_voiced), judged(OLD_FLAGS, old_voiced), 1, 2) is expected
