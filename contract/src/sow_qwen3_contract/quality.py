"""Judging timed lyric lines: voiced fractions, reason codes and the song's verdict.

The server (``sow_aligner.evidence``) and the client (``sow-qwen3 check``) both
judge with these functions, so their flags agree by construction. The thresholds are the ``quality_*`` parameters of
qwen3_aligner's config.pbtxt; the client reads them from the server's model
configuration, so config.pbtxt is their one source.

Reason codes (``LINE_FLAGS``), each line's codes in ``FLAG_ORDER``:

* ``unvoiced``: the voiced fraction of the line's window is below ``unvoiced_below``;
* ``zero_length``: end - start is below ``zero_length_below_s``;
* ``collapsed``: the start is within ``collapsed_within_s`` of the previous line's start;
* ``repaired``: more than half of the line's timestamps were changed by the monotonic repair;
* ``low_confidence``: the line's confidence is below ``low_confidence_below``;
* ``clamped``: a time of the line lay past the clip's end and was clamped;
* ``vad_unavailable``: voice activity could not be measured. Informational: it
  does not count as a flagged line, but a song without it cannot ``pass``.

Verdict: ``fail`` if the mean voiced fraction is below ``fail_voiced_below`` or
at least ``fail_flagged_fraction`` of the lines are flagged; else ``review`` if
the mean is below ``review_voiced_below``, any line is flagged, or voice
activity was not measured (for the song or for some line); else ``pass``.
The mean is over the lines whose voiced fraction is known.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields

UNVOICED = "unvoiced"
ZERO_LENGTH = "zero_length"
COLLAPSED = "collapsed"
REPAIRED = "repaired"
LOW_CONFIDENCE = "low_confidence"
CLAMPED = "clamped"
VAD_UNAVAILABLE = "vad_unavailable"
FLAG_ORDER = (UNVOICED, ZERO_LENGTH, COLLAPSED, REPAIRED, LOW_CONFIDENCE, CLAMPED, VAD_UNAVAILABLE)
INFORMATIONAL = frozenset({VAD_UNAVAILABLE})

PASS, REVIEW, FAIL = "pass", "review", "fail"
VERDICTS = (PASS, REVIEW, FAIL)  # from best to worst
PARAMETER_PREFIX = "quality_"


@dataclass(frozen=True)
class Thresholds:
    """The numbers behind the flags and the verdict (config.pbtxt ``quality_<field>``)."""

    unvoiced_below: float
    zero_length_below_s: float
    collapsed_within_s: float
    low_confidence_below: float
    review_voiced_below: float
    fail_voiced_below: float
    fail_flagged_fraction: float
    lrc_window_s: float

    @classmethod
    def parameter_keys(cls) -> tuple[str, ...]:
        return tuple(PARAMETER_PREFIX + field.name for field in fields(cls))

    @classmethod
    def from_parameters(cls, parameters: Mapping[str, str]) -> Thresholds:
        """Thresholds from model parameters (key -> text).

        Raises ValueError naming the key when one is missing or not a finite number >= 0.
        """
        values = {}
        for field in fields(cls):
            key = PARAMETER_PREFIX + field.name
            if key not in parameters:
                raise ValueError(f"config.pbtxt lacks the parameter {key}")
            try:
                value = float(parameters[key])
            except ValueError:
                value = math.nan
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"parameter {key} is {parameters[key]!r}; expected a number >= 0")
            values[field.name] = value
        return cls(**values)


# config.pbtxt's thresholds as shipped, for a client with no server to ask (the review page offline); a test
# (tests/contract) holds them equal to config.pbtxt, which stays their source.
SHIPPED_THRESHOLDS = Thresholds(unvoiced_below=0.30, zero_length_below_s=0.05, collapsed_within_s=0.1,
                                low_confidence_below=0.25, review_voiced_below=0.70, fail_voiced_below=0.55,
                                fail_flagged_fraction=0.25, lrc_window_s=3.0)


def voiced_fraction(start: float, end: float, segments: Sequence[tuple[float, float]]) -> float:
    """The fraction of [start, end] that the voiced ``segments`` (disjoint (start, end) pairs) cover.

    0 for a window of no length.
    """
    length = end - start
    if length <= 0:
        return 0.0
    covered = sum(max(0.0, min(end, seg_end) - max(start, seg_start)) for seg_start, seg_end in segments)
    return min(1.0, covered / length)


def lrc_window_ends(starts: Sequence[float], duration: float, window_s: float) -> list[float]:
    """The end of each LRC line's window: the next line's start, at most ``window_s`` after its own start.

    The last line's window ends ``window_s`` after its start, or at ``duration``, whichever is first.
    No window ends before its start.
    """
    ends = []
    for index, start in enumerate(starts):
        limit = starts[index + 1] if index + 1 < len(starts) else duration
        ends.append(max(start, min(limit, start + window_s)))
    return ends


def timing_flags(
    starts: Sequence[float],
    ends: Sequence[float],
    voiced: Sequence[float | None] | None,
    thresholds: Thresholds,
) -> list[list[str]]:
    """Per line, the codes that its times and voiced fraction earn (``voiced`` None: VAD not run; a None in
    it: that line's fraction is not known)."""
    flags = []
    for index, (start, end) in enumerate(zip(starts, ends)):
        codes = []
        fraction = None if voiced is None else voiced[index]
        if fraction is not None and fraction < thresholds.unvoiced_below:
            codes.append(UNVOICED)
        if end - start < thresholds.zero_length_below_s:
            codes.append(ZERO_LENGTH)
        if index > 0 and start - starts[index - 1] < thresholds.collapsed_within_s:
            codes.append(COLLAPSED)
        if fraction is None:
            codes.append(VAD_UNAVAILABLE)
        flags.append(codes)
    return flags


def in_order(codes: Sequence[str]) -> list[str]:
    """``codes`` without repeats, in ``FLAG_ORDER``."""
    return [code for code in FLAG_ORDER if code in codes]


def is_flagged(codes: Sequence[str]) -> bool:
    """Whether a line's codes hold one that counts against the song."""
    return any(code not in INFORMATIONAL for code in codes)


def mean_voiced(voiced: Sequence[float | None] | None) -> float:
    """The mean voiced fraction of the lines whose fraction is known; NaN when none is (voice activity not
    measured, or no line)."""
    known = [fraction for fraction in voiced or () if fraction is not None]
    return sum(known) / len(known) if known else math.nan


def song_verdict(voiced: Sequence[float | None] | None, flags: Sequence[Sequence[str]], thresholds: Thresholds) -> str:
    """``pass``, ``review`` or ``fail`` for a song (see the module docstring for the rule)."""
    mean = mean_voiced(voiced)
    measured = not math.isnan(mean)
    unmeasured_line = any(VAD_UNAVAILABLE in codes for codes in flags)
    flagged = sum(1 for codes in flags if is_flagged(codes))
    share = flagged / len(flags) if flags else 0.0
    if (measured and mean < thresholds.fail_voiced_below) or (flagged and share >= thresholds.fail_flagged_fraction):
        return FAIL
    if not measured or unmeasured_line or mean < thresholds.review_voiced_below or flagged:
        return REVIEW
    return PASS


def at_least(verdict: str, threshold: str) -> bool:
    """Whether ``verdict`` is as bad as ``threshold`` or worse (both in VERDICTS)."""
    return VERDICTS.index(verdict) >= VERDICTS.index(threshold)
