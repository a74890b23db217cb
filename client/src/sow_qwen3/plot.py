"""``--plot FILE.png``: one picture of a song's timings that a person can read at a glance.

Top: the waveform's envelope, with the regions the server's voice-activity
detector heard as voiced shaded. Below: one lane of labelled bars per timing
(the alignment, the checked file, or reference and hypothesis for ``eval``),
each bar coloured by its line's flags or, for ``eval``, by its error.

Needs the ``plot`` extra (``pip install 'sow-qwen3[plot]'``): matplotlib,
drawn with the Agg backend (no display), and Noto Sans CJK, registered as the
fallback font so that Chinese, Japanese and Korean lyrics render.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sow_qwen3_contract.tensors import SAMPLE_RATE

from .errors import BadInputError

OK = "#43a047"  # no flag / error within 0.3 s
WARN = "#fb8c00"  # flags about the model's own doubt / error within 1 s
BAD = "#e53935"  # flags about the timing itself / error over 1 s
NEUTRAL = "#90a4ae"  # reference lines; lines that were not judged
VOICED = "#c8e6c9"
TIMING_FLAGS = frozenset({"unvoiced", "zero_length", "collapsed"})
LATIN_FONT = "DejaVu Sans"
DPI = 100
ROWS = 3  # label rows per lane
LABEL_POINTS = 8


@dataclass(frozen=True)
class Bar:
    start: float
    end: float
    label: str
    color: str


@dataclass(frozen=True)
class Lane:
    name: str
    bars: Sequence[Bar]


def flag_color(flags: Sequence[str]) -> str:
    """Red for flags about the timing (unvoiced, zero_length, collapsed), orange for any other, green for none."""
    if TIMING_FLAGS & set(flags):
        return BAD
    return WARN if [code for code in flags if code != "vad_unavailable"] else OK


def error_color(error: float) -> str:
    return OK if abs(error) <= 0.3 else WARN if abs(error) <= 1.0 else BAD


def _pyplot():
    """matplotlib.pyplot on Agg with the CJK fallback font; BadInputError when the extra is missing."""
    try:
        import matplotlib
        from matplotlib import font_manager
        from noto_cjk_sans_otc import FONT_PATH
    except ImportError as exc:
        raise BadInputError(f"--plot needs the plot extra: pip install 'sow-qwen3[plot]' ({exc})") from None
    matplotlib.use("Agg")
    font_manager.fontManager.addfont(str(FONT_PATH))
    cjk = font_manager.FontProperties(fname=str(FONT_PATH)).get_name()
    # A list: matplotlib takes each glyph from the first family that has it.
    matplotlib.rcParams["font.family"] = [LATIN_FONT, cjk]
    import matplotlib.pyplot as plt

    return plt


def fit(label: str, pixels: float) -> str:
    """``label`` cut (with an ellipsis) to about ``pixels`` wide at LABEL_POINTS; wide (CJK) characters count twice."""
    narrow = LABEL_POINTS * 0.6 * DPI / 72  # pixels of a Latin character, roughly
    budget, out = pixels / narrow, []
    for char in label:
        cost = 2 if ord(char) >= 0x1100 else 1
        if budget < cost:
            return "".join(out[:-1]) + "…" if out else ""
        budget -= cost
        out.append(char)
    return label


def envelope(audio: np.ndarray, bins: int) -> tuple[np.ndarray, np.ndarray]:
    """The peak absolute sample of ``bins`` equal slices of ``audio``, and each slice's start index."""
    bins = max(1, min(bins, audio.size))
    edges = np.linspace(0, audio.size, bins + 1).astype(int)
    peaks = np.array([np.abs(audio[a:b]).max() if b > a else 0.0 for a, b in zip(edges[:-1], edges[1:])])
    return peaks, edges[:-1]


def plot_timeline(path: Path, *, title: str, duration: float, lanes: Sequence[Lane],
                  audio: np.ndarray | None = None, segments: Sequence[tuple[float, float]] = (),
                  sample_rate: int = SAMPLE_RATE) -> None:
    """Write the picture to ``path`` (PNG). ``audio`` None leaves out the waveform panel."""
    plt = _pyplot()
    width = float(np.clip(duration / 5.0, 12.0, 48.0))
    ratios = ([1.2] if audio is not None else []) + [1.0] * len(lanes)
    figure, axes = plt.subplots(len(ratios), 1, sharex=True, figsize=(width, 1.6 + 1.8 * len(ratios)),
                                gridspec_kw={"height_ratios": ratios}, squeeze=False)
    axes = list(axes[:, 0])
    if audio is not None:
        wave = axes.pop(0)
        peaks, starts = envelope(audio, int(width * 100))
        wave.fill_between(starts / sample_rate, -peaks, peaks, color="#546e7a", linewidth=0)
        for start, end in segments:
            wave.axvspan(start, end, color=VOICED, zorder=0)
        wave.set_ylabel("audio")
        wave.set_yticks([])
        wave.set_title(title, loc="left")
    else:
        axes[0].set_title(title, loc="left")
    pixels_per_second = width * DPI * 0.9 / duration
    for axis, lane in zip(axes, lanes):
        for number, bar in enumerate(lane.bars):
            row = number % ROWS  # rows in turn, so that neighbouring labels do not overlap
            axis.broken_barh([(bar.start, max(bar.end - bar.start, duration / 400))], (row, 0.8),
                             facecolors=bar.color)
            after = lane.bars[number + ROWS].start if number + ROWS < len(lane.bars) else duration
            label = fit(f" {bar.label}", (after - bar.start) * pixels_per_second)
            axis.text(bar.start, row + 0.4, label, va="center", fontsize=LABEL_POINTS, clip_on=True)
        axis.set_ylim(-0.1, ROWS - 0.1)
        axis.set_yticks([])
        axis.set_ylabel(lane.name)
        for start, end in segments:
            axis.axvspan(start, end, color=VOICED, alpha=0.35, zorder=0)
    axes[-1].set_xlim(0, duration)
    axes[-1].set_xlabel("seconds")
    figure.tight_layout()
    try:
        figure.savefig(path, dpi=DPI)
    except OSError as exc:
        raise BadInputError(f"cannot write the plot {path}: {exc.strerror or exc}") from None
    finally:
        plt.close(figure)
