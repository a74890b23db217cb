"""sow_qwen3_contract.quality and sow_aligner.evidence: voiced fractions, reason codes, verdicts, slot evidence."""
from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sow_aligner.evidence import judge, slot_evidence
from sow_qwen3_contract.quality import (
    FAIL,
    PASS,
    REVIEW,
    Thresholds,
    at_least,
    lrc_window_ends,
    song_verdict,
    timing_flags,
    voiced_fraction,
)
from sow_qwen3_contract.tensors import END_REPAIRED, START_REPAIRED
from sow_qwen3_server import launcher

REPO = Path(__file__).resolve().parents[2]
T = Thresholds(unvoiced_below=0.3, zero_length_below_s=0.05, collapsed_within_s=0.1, low_confidence_below=0.25,
               review_voiced_below=0.7, fail_voiced_below=0.55, fail_flagged_fraction=0.25, lrc_window_s=3.0)


def config_parameters() -> dict[str, str]:
    return launcher.config_parameters(REPO / "model_repository")


def test_config_pbtxt_holds_the_issue_thresholds():
    assert Thresholds.from_parameters(config_parameters()) == T


@pytest.mark.parametrize("change, message", [
    (lambda p: p.pop("quality_unvoiced_below"), "lacks the parameter quality_unvoiced_below"),
    (lambda p: p.update(quality_lrc_window_s="three"), "quality_lrc_window_s is 'three'"),
    (lambda p: p.update(quality_fail_voiced_below="-1"), "quality_fail_voiced_below is '-1'"),
    (lambda p: p.update(quality_fail_voiced_below="nan"), "quality_fail_voiced_below is 'nan'"),
])
def test_bad_threshold_is_named(change, message):
    parameters = config_parameters()
    change(parameters)
    with pytest.raises(ValueError, match=re.escape(message)):
        Thresholds.from_parameters(parameters)


def test_voiced_fraction_by_hand():
    segments = [(1.0, 2.0), (3.0, 5.0)]
    assert voiced_fraction(0.0, 4.0, segments) == pytest.approx(2.0 / 4.0)  # 1 s + 1 s of 4 s
    assert voiced_fraction(1.5, 1.9, segments) == pytest.approx(1.0)
    assert voiced_fraction(2.0, 3.0, segments) == 0.0
    assert voiced_fraction(3.0, 3.0, segments) == 0.0  # zero length


@given(st.lists(st.tuples(st.floats(0, 100, allow_subnormal=False), st.floats(0, 10, allow_subnormal=False)), max_size=8),
       st.floats(0, 100, allow_subnormal=False), st.floats(0, 20, allow_subnormal=False))  # torch sets flush-to-zero
def test_voiced_fraction_is_a_fraction(raw, start, length):
    segments, cursor = [], 0.0
    for gap, size in raw:  # disjoint, in order
        segments.append((cursor + gap, cursor + gap + size))
        cursor += gap + size
    assert 0.0 <= voiced_fraction(start, start + length, segments) <= 1.0


def test_lrc_windows_end_at_the_next_start_or_after_the_window():
    assert lrc_window_ends([0.0, 1.0, 10.0, 10.0, 11.0], 12.0, 3.0) == [1.0, 4.0, 10.0, 11.0, 12.0]


def test_timing_flags():
    starts = [0.0, 2.0, 2.05, 5.0]
    ends = [1.5, 2.03, 4.0, 5.0]
    voiced = [0.9, 0.0, 0.8, 0.1]
    assert timing_flags(starts, ends, voiced, T) == [
        [], ["unvoiced", "zero_length"], ["collapsed"], ["unvoiced", "zero_length"]]
    assert timing_flags(starts[:1], ends[:1], None, T) == [["vad_unavailable"]]


@pytest.mark.parametrize("voiced, flags, expected", [
    ([0.9, 0.8, 0.7, 0.75], [[], [], [], []], PASS),
    ([0.7, 0.7], [[], []], PASS),  # a mean of exactly 0.70 is not below it
    ([0.9, 0.4, 0.7, 0.7], [[], [], [], []], REVIEW),  # mean 0.675
    ([0.9, 0.9, 0.9, 0.9, 0.9], [[], ["collapsed"], [], [], []], REVIEW),  # 1 of 5 flagged: 20 %
    ([0.9, 0.9, 0.9, 0.9], [[], ["collapsed"], [], []], FAIL),  # 1 of 4: 25 %
    ([0.5, 0.59], [[], []], FAIL),  # mean 0.545
    ([0.5, 0.6], [[], []], REVIEW),  # mean 0.55 is not below 0.55
    (None, [["vad_unavailable"], ["vad_unavailable"]], REVIEW),  # not measured: never pass; not flagged
    (None, [["vad_unavailable", "collapsed"], ["vad_unavailable"]], FAIL),
])
def test_song_verdict(voiced, flags, expected):
    assert song_verdict(voiced, flags, T) == expected


def test_verdict_order():
    assert at_least(FAIL, REVIEW) and at_least(REVIEW, REVIEW) and not at_least(PASS, REVIEW)
    assert at_least(FAIL, FAIL) and not at_least(REVIEW, FAIL)


def test_slot_evidence_by_hand():
    # Two lines: 2 units, then none, then 1 unit. Slots: (start, end) per unit.
    evidence = slot_evidence(
        units_per_line=[2, 0, 1],
        slot_confidence=[0.2, 0.4, 0.6, 0.8, 0.5, 0.1],
        raw_ms=[0, 80, 400, 160, 240, 9000],
        repaired_ms=[0, 80, 160, 160, 240, 2000],
        duration=1.5,
    )
    assert evidence.unit_confidence == pytest.approx([0.3, 0.7, 0.3])
    assert evidence.unit_repaired == [0, START_REPAIRED, END_REPAIRED]
    assert evidence.line_confidence[0] == pytest.approx(0.5)
    assert math.isnan(evidence.line_confidence[1])
    assert evidence.line_confidence[2] == pytest.approx(0.3)
    assert evidence.line_repaired == [False, False, False]  # 1 of 4 slots; none; 1 of 2 is not more than half
    assert evidence.line_clamped == [False, False, True]


def test_slot_evidence_repaired_needs_more_than_half():
    evidence = slot_evidence([2], [1.0] * 4, [0, 1, 2, 3], [9, 9, 9, 3], 10.0)
    assert evidence.line_repaired == [True]
    assert evidence.unit_repaired == [START_REPAIRED | END_REPAIRED, START_REPAIRED]


def test_slot_evidence_refuses_mismatched_lengths():
    with pytest.raises(ValueError, match="4 slots for 2 units"):
        slot_evidence([2], [1.0] * 3, [0] * 4, [0] * 4, 1.0)


def test_judge_combines_model_and_timing_flags():
    evidence = slot_evidence([1, 1, 1], [0.9, 0.9, 0.1, 0.2, 0.9, 0.9], [0, 800, 800, 1600, 1600, 2000],
                             [0, 800, 800, 1600, 1600, 2000], 3.0)
    judgement = judge([0.0, 0.8, 1.6], [0.8, 1.6, 2.0], evidence, [(0.0, 1.6)], T)
    assert judgement.line_voiced == pytest.approx([1.0, 1.0, 0.0])
    assert judgement.line_flags == [[], ["low_confidence"], ["unvoiced"]]
    assert judgement.song_voiced == pytest.approx(2 / 3)
    assert judgement.verdict == FAIL  # 2 of 3 lines flagged


def test_judge_without_vad():
    evidence = slot_evidence([1], [0.9, 0.9], [0, 800], [0, 800], 3.0)
    judgement = judge([0.0], [0.8], evidence, None, T)
    assert math.isnan(judgement.line_voiced[0]) and math.isnan(judgement.song_voiced)
    assert judgement.line_flags == [["vad_unavailable"]]
    assert judgement.verdict == REVIEW
