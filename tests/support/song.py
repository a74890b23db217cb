"""The synthetic test song (scripts/make_test_song.py) and the in-process VAD model code."""
from __future__ import annotations

import importlib.util
import json
import re
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from types import ModuleType

import numpy as np
import soundfile

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "tests" / "data"
SONG_AUDIO = DATA / "synthetic_song.ogg"
SONG_LYRICS = DATA / "synthetic_song.txt"
SONG_LRC = DATA / "synthetic_song.lrc"
VAD_CODE = REPO / "model_repository" / "silero_vad" / "1" / "voice_activity.py"
ALIGNER_CONFIG = REPO / "model_repository" / "qwen3_aligner" / "config.pbtxt"


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


def song_audio() -> np.ndarray:
    """The song decoded to 16 kHz mono float32 (it is stored at 16 kHz)."""
    data, rate = soundfile.read(SONG_AUDIO, dtype="float32")
    assert rate == 16000 and data.ndim == 1
    return data


def truth() -> Truth:
    raw = json.loads((DATA / "synthetic_song.truth.json").read_text(encoding="utf-8"))
    return Truth(raw["duration_seconds"], [TrueLine(**line) for line in raw["lines"]],
                 [tuple(gap) for gap in raw["instrumental_gaps"]])


@cache
def config_thresholds():
    """The quality thresholds (sow_aligner.quality.Thresholds) of qwen3_aligner's config.pbtxt."""
    from sow_aligner.quality import Thresholds

    text = ALIGNER_CONFIG.read_text()
    return Thresholds.from_parameters(dict(re.findall(r'key:\s*"(\w+)"\s*value:\s*\{\s*string_value:\s*"([^"]*)"', text)))


@cache
def voice_activity_module() -> ModuleType:
    """silero_vad's model code (model_repository/silero_vad/1/voice_activity.py), imported in-process."""
    spec = importlib.util.spec_from_file_location("voice_activity", VAD_CODE)
    module = importlib.util.module_from_spec(spec)
    sys.modules["voice_activity"] = module
    spec.loader.exec_module(module)
    return module
