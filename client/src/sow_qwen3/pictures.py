"""The ``--plot`` pictures of ``align``, ``check`` and ``eval``: their results as lanes of ``plot_timeline``."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from sow_qwen3_contract.quality import lrc_window_ends
from sow_qwen3_contract.tensors import SAMPLE_RATE

from .check import CheckReport
from .client import AlignResult
from .evaluate import EvalReport
from .plot import NEUTRAL, Bar, Lane, error_color, flag_color, plot_timeline

EVAL_BAR_SECONDS = 3.0  # eval knows starts only: a bar lasts until the next start, at most this long


def _label(index: int, text: str, flags: Sequence[str] = ()) -> str:
    return f"{index} {text}" + (f" [{','.join(flags)}]" if flags else "")


def _voiced(value: float | None) -> str:
    return "not measured" if value is None or np.isnan(value) else f"{value:.2f}"


def alignment_picture(path: Path, result: AlignResult, segments: Sequence[tuple[float, float]]) -> None:
    """``align --plot``: the aligned lines coloured by their flags over the waveform and voiced regions."""
    quality = result.quality
    bars = [Bar(line.start, line.end, _label(i, line.text, line.flags), flag_color(line.flags))
            for i, line in enumerate(result.lines)]
    title = (f"alignment: {quality.verdict} (mean voiced fraction {_voiced(quality.mean_voiced_fraction)}, "
             f"{quality.flagged_lines} of {result.line_count} lines flagged)")
    plot_timeline(path, title=title, duration=result.duration_seconds, lanes=[Lane("aligned", bars)],
                  audio=result.audio, segments=segments)


def check_picture(path: Path, report: CheckReport, audio: np.ndarray, segments: Sequence[tuple[float, float]],
                  name: str) -> None:
    """``check --plot``: each line's window coloured by its flags."""
    bars = [Bar(line.start, line.end, _label(line.index, line.text, line.flags), flag_color(line.flags))
            for line in report.lines]
    title = (f"check {name}: {report.verdict} (mean voiced fraction {_voiced(report.mean_voiced_fraction)}, "
             f"{report.flagged_lines} of {len(report.lines)} lines flagged)")
    plot_timeline(path, title=title, duration=audio.size / SAMPLE_RATE, lanes=[Lane("checked", bars)],
                  audio=audio, segments=segments)


def _bar_ends(starts: Sequence[float], duration: float) -> dict[float, float]:
    """Start -> its bar's end: the next start in time order (lines may be paired out of time order), at most 3 s on."""
    ordered = sorted(starts)
    return dict(zip(ordered, lrc_window_ends(ordered, duration, EVAL_BAR_SECONDS)))


def eval_picture(path: Path, report: EvalReport, audio: np.ndarray | None,
                 segments: Sequence[tuple[float, float]]) -> None:
    """``eval --plot``: the reference lines above the hypothesis lines, these coloured by their error."""
    references = [pair.reference for pair in report.pairs]
    hypotheses = [pair.hypothesis for pair in report.pairs]
    last = max(references + hypotheses) + EVAL_BAR_SECONDS
    duration = audio.size / SAMPLE_RATE if audio is not None else last
    reference_end = _bar_ends(references, duration)
    end_of = _bar_ends(hypotheses, duration)
    lanes = [
        Lane("reference", [Bar(p.reference, reference_end[p.reference], _label(p.index, p.text), NEUTRAL)
                           for p in report.pairs]),
        Lane("hypothesis", [Bar(p.hypothesis, end_of[p.hypothesis], f"{p.index} {p.error:+.2f} s", error_color(p.error))
                            for p in report.pairs]),
    ]
    data = report.data()
    title = (f"eval: {data['lines']} lines, mean |error| {data['mean_abs_error_s']:.2f} s, "
             f"within 0.3 s {data['within_0_3_s']:.0%}, within 1.0 s {data['within_1_0_s']:.0%}")
    plot_timeline(path, title=title, duration=duration, lanes=lanes, audio=audio, segments=segments)
