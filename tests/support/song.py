"""The synthetic test songs (scripts/make_test_song.py) and the in-process VAD model code."""
from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
import soundfile

from sow_qwen3_contract.tensors import SAMPLE_RATE
from sow_qwen3_server import launcher

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "tests" / "data"
SONG_AUDIO = DATA / "synthetic_song.ogg"
SONG_LYRICS = DATA / "synthetic_song.txt"
SONG_LRC = DATA / "synthetic_song.lrc"
LONG_SONG = "synthetic_song_7min"  # 7 minutes, chorus four times, lyrics with section markers and repeats
SONGS = ("synthetic_song", LONG_SONG)


@dataclass(frozen=True)
class TrueLine:
    text: str
    start: float
    end: float


@dataclass(frozen=True)
class Truth:
    duration: float
    lines: list[TrueLine]
    gaps: list[tuple[float, float]]  # instrumental: tones and noise, no voice


def song_audio(name: str = "synthetic_song") -> np.ndarray:
    """Song ``name`` decoded to 16 kHz mono float32 (it is stored at 16 kHz)."""
    data, rate = soundfile.read(DATA / f"{name}.ogg", dtype="float32")
    assert rate == SAMPLE_RATE and data.ndim == 1
    return data


def truth(name: str = "synthetic_song") -> Truth:
    """Song ``name``'s true line times (its sung lines, repeats sung out) and instrumental gaps."""
    raw = json.loads((DATA / f"{name}.truth.json").read_text(encoding="utf-8"))
    return Truth(raw["duration_seconds"], [TrueLine(**line) for line in raw["lines"]],
                 [tuple(gap) for gap in raw["instrumental_gaps"]])


@cache
def config_thresholds():
    """The quality thresholds (sow_qwen3_contract.quality.Thresholds) of qwen3_aligner's config.pbtxt."""
    from sow_qwen3_contract.quality import Thresholds

    return Thresholds.from_parameters(launcher.config_parameters(REPO / "model_repository"))


