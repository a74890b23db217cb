"""The evidence behind one alignment: confidences, repairs, clamping, voice activity, flags, verdict.

Pure (no torch, no Triton). The engine hands over what its forward pass saw
per timestamp slot (two slots per unit, start then end):

* the softmax probability of the class it chose, the slot's confidence;
* the chosen time before and after the monotonic repair;

and ``judge`` turns that, the line times and the voiced segments (None when
the VAD could not be asked) into the per-line and per-song outputs.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from sow_qwen3_contract.quality import (
    CLAMPED,
    LOW_CONFIDENCE,
    REPAIRED,
    Thresholds,
    in_order,
    mean_voiced,
    song_verdict,
    timing_flags,
    voiced_fraction,
)
from sow_qwen3_contract.tensors import END_REPAIRED, START_REPAIRED


@dataclass(frozen=True)
class SlotEvidence:
    """Per unit, what the forward pass and the repair did (units in line order)."""

    unit_confidence: list[float]  # mean of the unit's two slot confidences
    unit_repaired: list[int]  # START_REPAIRED | END_REPAIRED bits
    line_confidence: list[float]  # mean over the line's slots; NaN for a line without units
    line_repaired: list[bool]  # more than half of the line's slots changed by the repair
    line_clamped: list[bool]  # a unit time of the line lay past the clip's end


@dataclass(frozen=True)
class Judgement:
    """The per-line and per-song quality outputs of one alignment."""

    line_voiced: list[float]  # NaN per line when voice activity was not measured
    line_flags: list[list[str]]
    song_voiced: float  # NaN when voice activity was not measured
    verdict: str


def slot_evidence(
    units_per_line: Sequence[int],
    slot_confidence: Sequence[float],
    raw_ms: Sequence[float],
    repaired_ms: Sequence[float],
    duration: float,
) -> SlotEvidence:
    """Per-unit and per-line evidence from the 2 * units slots (start, end interleaved).

    ``raw_ms`` are the chosen times before the repair, ``repaired_ms`` after it;
    a time counts as clamped when the repaired value, in seconds, exceeds
    ``duration`` (the line times are clamped to the clip).
    """
    slots = 2 * sum(units_per_line)
    if not (len(slot_confidence) == len(raw_ms) == len(repaired_ms) == slots):
        raise ValueError(
            f"{slots} slots for {sum(units_per_line)} units but {len(slot_confidence)} confidences, "
            f"{len(raw_ms)} raw and {len(repaired_ms)} repaired times"
        )
    changed = [raw != fixed for raw, fixed in zip(raw_ms, repaired_ms)]
    unit_confidence = [(slot_confidence[i] + slot_confidence[i + 1]) / 2 for i in range(0, slots, 2)]
    unit_repaired = [START_REPAIRED * changed[i] + END_REPAIRED * changed[i + 1] for i in range(0, slots, 2)]
    line_confidence, line_repaired, line_clamped = [], [], []
    cursor = 0
    for count in units_per_line:
        window = range(cursor, cursor + 2 * count)
        line_confidence.append(sum(slot_confidence[i] for i in window) / len(window) if count else math.nan)
        line_repaired.append(2 * sum(changed[i] for i in window) > len(window))
        line_clamped.append(any(repaired_ms[i] / 1000.0 > duration for i in window))
        cursor += 2 * count
    return SlotEvidence(unit_confidence, unit_repaired, line_confidence, line_repaired, line_clamped)


def judge(
    starts: Sequence[float],
    ends: Sequence[float],
    evidence: SlotEvidence,
    segments: Sequence[tuple[float, float]] | None,
    thresholds: Thresholds,
) -> Judgement:
    """Flags and verdict for lines timed [starts, ends], with the VAD's voiced ``segments`` (None: not run)."""
    voiced = None if segments is None else [voiced_fraction(s, e, segments) for s, e in zip(starts, ends)]
    flags = timing_flags(starts, ends, voiced, thresholds)
    for index, codes in enumerate(flags):
        if evidence.line_repaired[index]:
            codes.append(REPAIRED)
        if evidence.line_confidence[index] < thresholds.low_confidence_below:  # False for NaN
            codes.append(LOW_CONFIDENCE)
        if evidence.line_clamped[index]:
            codes.append(CLAMPED)
        flags[index] = in_order(codes)
    return Judgement(
        line_voiced=[math.nan] * len(starts) if voiced is None else voiced,
        line_flags=flags,
        song_voiced=mean_voiced(voiced),
        verdict=song_verdict(voiced, flags, thresholds),
    )
