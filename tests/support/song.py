"""The synthetic test songs (scripts/make_test_song.py) and the in-process VAD model code."""
from __future__ import annotations

import importlib.util
import json
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from types import ModuleType

import numpy as np
import soundfile

from sow_qwen3_server import launcher

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "tests" / "data"
SONG_AUDIO = DATA / "synthetic_song.ogg"
SONG_LYRICS = DATA / "synthetic_song.txt"
SONG_LRC = DATA / "synthetic_song.lrc"
LONG_SONG = "synthetic_song_7min"  # 7 minutes, chorus four times, lyrics with section markers and repeats
SONGS = ("synthetic_song", LONG_SONG)
VAD_CODE = REPO / "model_repository" / "silero_vad" / "1" / "voice_activity.py"


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
    assert rate == 16000 and data.ndim == 1
    return data


def truth(name: str = "synthetic_song") -> Truth:
    """Song ``name``'s true line times (its sung lines, repeats sung out) and instrumental gaps."""
    raw = json.loads((DATA / f"{name}.truth.json").read_text(encoding="utf-8"))
    return Truth(raw["duration_seconds"], [TrueLine(**line) for line in raw["lines"]],
                 [tuple(gap) for gap in raw["instrumental_gaps"]])


@cache
def config_thresholds():
    """The quality thresholds (sow_aligner.quality.Thresholds) of qwen3_aligner's config.pbtxt."""
    from sow_aligner.quality import Thresholds

    return Thresholds.from_parameters(launcher.config_parameters(REPO / "model_repository"))


@cache
def voice_activity_module() -> ModuleType:
    """silero_vad's model code (model_repository/silero_vad/1/voice_activity.py), imported in-process."""
    spec = importlib.util.spec_from_file_location("voice_activity", VAD_CODE)
    module = importlib.util.module_from_spec(spec)
    sys.modules["voice_activity"] = module
    spec.loader.exec_module(module)
    return module
