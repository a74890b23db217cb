"""Audio the tests feed the aligner: the bundled speech sample and synthetic clips."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile
import soxr

REPO = Path(__file__).resolve().parents[2]
SAMPLE_AUDIO = REPO / "assets" / "amazing_grace_zh.ogg"
SAMPLE_LYRICS = REPO / "assets" / "amazing_grace_zh.txt"


def speech(seconds: float | None = None) -> np.ndarray:
    """The bundled Mandarin speech sample as 16 kHz mono float32, cut to ``seconds``."""
    data, rate = soundfile.read(SAMPLE_AUDIO, dtype="float32", always_2d=True)
    clip = soxr.resample(data.mean(axis=1), rate, 16000).astype(np.float32)
    return clip if seconds is None else clip[: int(seconds * 16000)]


def noise(seconds: float, seed: int, level: float = 0.3) -> np.ndarray:
    """Seeded uniform noise, 16 kHz mono float32."""
    return np.random.default_rng(seed).uniform(-level, level, int(seconds * 16000)).astype(np.float32)
