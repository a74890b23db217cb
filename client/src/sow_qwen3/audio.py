"""Decode an audio file to what the server takes: float32 mono samples at 16 kHz in [-1, 1]."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile
import soxr

from sow_qwen3_contract.tensors import SAMPLE_RATE

from .duration import HeaderDuration, header_duration, local_reader
from .errors import BadInputError

FORMATS = "WAV, FLAC, OGG or MP3"


def too_long(seconds: float, limit: float, what: str = "audio") -> BadInputError:
    """The error for audio past the limit; its message gives both numbers."""
    return BadInputError(f"{what} is {seconds:.1f} s long; the limit is {limit:g} s")


def file_duration(path: Path) -> HeaderDuration | None:
    """The duration ``path``'s headers state, or None if they do not tell.

    ``duration.header_duration`` reads WAV, FLAC, MP3 and Ogg; libsndfile
    answers for other formats, but not for an MP3: without a frame count its
    decoder guesses from the first frame's bit rate, which a variable bit
    rate makes wrong.
    """
    with path.open("rb") as file:
        found = header_duration(local_reader(file, path.stat().st_size))
    if found is not None:
        return found
    try:
        info = soundfile.info(str(path))
    except (soundfile.LibsndfileError, RuntimeError):
        return None
    if info.format == "MP3" or not info.samplerate or info.frames <= 0:
        return None
    return HeaderDuration(info.frames / info.samplerate, info.format.lower())


def load_audio(path: Path, max_seconds: float, name: str | None = None) -> np.ndarray:
    """Decode ``path``, mix down to mono and resample to 16 kHz.

    Raises BadInputError when the file is not audio soundfile can decode, holds
    no samples, or is longer than ``max_seconds`` (checked from the header
    before decoding, see ``file_duration``, and again on the decoded samples).
    """
    label = name or str(path)
    header = file_duration(path)
    if header is not None and header.longer_than(max_seconds):
        raise too_long(header.seconds, max_seconds, label)
    try:
        samples, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    except (soundfile.LibsndfileError, RuntimeError) as exc:
        raise BadInputError(f"{label} is not audio that can be decoded ({FORMATS}): {exc}") from None
    if samples.shape[0] == 0:
        raise BadInputError(f"{label} holds no audio samples")
    seconds = samples.shape[0] / rate
    if seconds > max_seconds:
        raise too_long(seconds, max_seconds, label)
    mono = samples.mean(axis=1, dtype=np.float32) if samples.shape[1] > 1 else samples[:, 0]
    if rate != SAMPLE_RATE:
        mono = soxr.resample(mono, rate, SAMPLE_RATE, quality="HQ")
    if not np.all(np.isfinite(mono)):
        raise BadInputError(f"{label} decodes to non-finite samples")
    return np.clip(mono, -1.0, 1.0).astype(np.float32, copy=False)
