"""A stand-in for the engine's song (``AlignmentEngine.song``) so the song pipeline's rules can be driven
without a model.

The model cannot be asked for chosen timings, so these fakes take its place
in the pure tests of ``sow_aligner.song_alignment`` / ``windows`` / ``realign``.
They build their result with the engine's own ``alignment_from_slots``, so
the Alignment has the engine's shape and contracts.

``position_clip(seconds)`` is a clip whose sample k holds k itself;
``RecordingAlign.song(clip)`` is that clip as the pipeline's ``SongAudio``,
each part it is asked to align recorded with where in the song it starts.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from sow_aligner.alignment import Alignment, alignment_from_slots
from sow_aligner.errors import InvalidRequest
from sow_aligner.windows import sounded
from sow_qwen3_contract.tensors import SAMPLE_RATE


def words(line: str) -> list[str]:
    """A line's units for the fakes: its whitespace-separated words with a letter or digit ("-" has none)."""
    return [word for word in line.split() if sounded(word)]


def position_clip(seconds: float) -> np.ndarray:
    """A clip of ``seconds`` whose sample k is k (float64, so positions stay exact)."""
    return np.arange(int(round(seconds * SAMPLE_RATE)), dtype=np.float64)


def alignment_of(lines: Sequence[str], unit_ms: Sequence[int], confidence: Sequence[float],
                 duration: float, raw_ms: Sequence[int] | None = None) -> Alignment:
    """An Alignment of ``lines`` (units: whitespace words) from per-slot times and confidences, as the engine builds it."""
    per_line = [words(line) for line in lines]
    return alignment_from_slots([len(units) for units in per_line], [unit for units in per_line for unit in units],
                                list(unit_ms), list(raw_ms or unit_ms), confidence, duration)


@dataclass
class RecordingAlign:
    """``align`` that answers with ``timing(part_start_s, part_seconds, lines)`` -> (slot ms, confidences),
    and records every call as (part_start_s, part_seconds, lines)."""

    timing: Callable[[float, float, list[str]], tuple[list[int], list[float]]]
    calls: list[tuple[float, float, list[str]]] = field(default_factory=list)

    def song(self, clip: np.ndarray, grid: int = 1) -> FakeSong:
        """``clip`` as the song the pipeline aligns, its parts answered by this fake, on a grid of ``grid`` samples."""
        return FakeSong(len(clip), grid, self)

    def __call__(self, low: int, high: int, lines: list[str], language: str) -> Alignment:
        start, seconds = low / SAMPLE_RATE, (high - low) / SAMPLE_RATE
        self.calls.append((start, seconds, list(lines)))
        if not any(words(line) for line in lines):
            raise InvalidRequest("lyrics contain nothing alignable")
        unit_ms, confidence = self.timing(start, seconds, lines)
        return alignment_of(lines, unit_ms, confidence, seconds)


@dataclass(frozen=True)
class FakeSong:
    """``windows.SongAudio`` whose parts ``align`` answers; checks each part is on the grid, as the engine does."""

    samples: int
    grid: int
    answer: RecordingAlign

    def align(self, low: int, high: int, lines: list[str], language: str) -> Alignment:
        assert 0 <= low < high <= self.samples and low % self.grid == 0, (low, high)
        assert high % self.grid == 0 or high == self.samples, (high, self.samples)
        return self.answer(low, high, lines, language)


def even_timing(confidence: float = 0.9) -> Callable[[float, float, list[str]], tuple[list[int], list[float]]]:
    """Units spread evenly over the part, each slot with ``confidence``: a model that gets everything right."""
    def timing(start: float, seconds: float, lines: list[str]):
        units = sum(len(words(line)) for line in lines)
        step = seconds * 1000 / max(1, units)
        unit_ms = [int(step * (i // 2) + (step * 0.9 if i % 2 else 0)) for i in range(2 * units)]
        return unit_ms, [confidence] * (2 * units)
    return timing
