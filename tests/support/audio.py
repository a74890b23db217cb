"""Audio the tests feed the aligner: the bundled speech sample and synthetic clips."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile
import soxr

from sow_qwen3_contract.tensors import SAMPLE_RATE

REPO = Path(__file__).resolve().parents[2]
SAMPLE_AUDIO = REPO / "assets" / "amazing_grace_zh.ogg"
SAMPLE_LYRICS = REPO / "assets" / "amazing_grace_zh.txt"


def speech(seconds: float | None = None) -> np.ndarray:
    """The bundled Mandarin speech sample as 16 kHz mono float32, cut to ``seconds``."""
    data, rate = soundfile.read(SAMPLE_AUDIO, dtype="float32", always_2d=True)
    clip = soxr.resample(data.mean(axis=1), rate, SAMPLE_RATE).astype(np.float32)
    return clip if seconds is None else clip[: int(seconds * SAMPLE_RATE)]


def noise(seconds: float, seed: int, level: float = 0.3) -> np.ndarray:
    """Seeded uniform noise, 16 kHz mono float32."""
    return np.random.default_rng(seed).uniform(-level, level, int(seconds * SAMPLE_RATE)).astype(np.float32)


# (format, subtype) soundfile writes for each file extension the client tests use.
CONTAINERS = {
    "wav": ("WAV", "PCM_16"),
    "flac": ("FLAC", "PCM_16"),
    "ogg": ("OGG", "VORBIS"),
    "opus": ("OGG", "OPUS"),
    "mp3": ("MP3", "MPEG_LAYER_III"),
}


def write_clip(path: Path, audio: np.ndarray, rate: int = SAMPLE_RATE, channels: int = 1) -> Path:
    """Write 16 kHz mono ``audio`` to ``path`` at ``rate`` Hz with ``channels`` channels.

    The container comes from the extension (see CONTAINERS). The second channel,
    if any, is the first at half level, so a mix-down differs from either.
    """
    resampled = audio if rate == SAMPLE_RATE else soxr.resample(audio, SAMPLE_RATE, rate).astype(np.float32)
    layers = [resampled * (1.0 if index == 0 else 0.5) for index in range(channels)]
    container, subtype = CONTAINERS[path.suffix.lstrip(".")]
    frames = np.stack(layers, axis=1)
    # In pieces: libsndfile 1.2.2 crashes writing minutes of Vorbis in one call.
    with soundfile.SoundFile(str(path), "w", rate, channels, format=container, subtype=subtype) as out:
        for start in range(0, len(frames), rate * 10):
            out.write(frames[start:start + rate * 10])
    return path


MPEG2_LAYER3_KBPS = (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160)


def mp3_without_frame_count(path: Path, audio: np.ndarray, bitrate_mode: str) -> Path:
    """``audio`` (16 kHz mono) as an MP3 with no Xing/Info frame, as some encoders and streams write it.

    ``bitrate_mode`` is "CONSTANT" or "VARIABLE" (libsndfile applies it only
    together with a compression level). The LAME encoder's first frame, which
    holds the Xing/Info frame count, is cut off.
    """
    soundfile.write(str(path), audio, SAMPLE_RATE, format="MP3", bitrate_mode=bitrate_mode, compression_level=0.5)
    data = path.read_bytes()
    assert data[:4] != b"ID3" and data[13:17] in (b"Info", b"Xing")  # MPEG-2 mono: side info is 9 bytes
    first_frame = 72 * MPEG2_LAYER3_KBPS[data[2] >> 4] * 1000 // SAMPLE_RATE + ((data[2] >> 1) & 1)
    path.write_bytes(data[first_frame:])
    return path
