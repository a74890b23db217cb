"""Decode an audio file to what the server takes: float32 mono samples at 16 kHz in [-1, 1]."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile
import soxr

from sow_qwen3_contract.tensors import SAMPLE_RATE

from .duration import HeaderDuration, header_duration, local_reader, mp3_scanned_duration
from .errors import BadInputError

FORMATS = "WAV, FLAC, OGG or MP3"
# Seconds a decoded MP3 may fall short of its frame headers' length (the decoder's delay and padding) before
# the decode counts as cut short.
CUT_SHORT = 0.25


def too_long(seconds: float, limit: float, what: str = "audio", header: HeaderDuration | None = None) -> BadInputError:
    """The error for audio past the limit; its message gives both numbers (and how ``header`` found the length)."""
    length = f"{seconds:.1f} s long" if header is None else header.describe()
    return BadInputError(f"{what} is {length}; the limit is {limit:g} s")


def file_duration(path: Path, max_seconds: float | None = None) -> HeaderDuration | None:
    """The duration ``path``'s headers state, or None if they do not tell.

    ``duration.header_duration`` reads WAV, FLAC, MP3 and Ogg; libsndfile
    answers for other formats, but not for an MP3: without a frame count its
    decoder guesses from the first frame's bit rate, which a variable bit
    rate makes wrong. For a variable-bit-rate MP3 without a frame count the
    headers give a lower bound; when that is not past ``max_seconds`` every
    frame header of the file is read (``mp3_scanned_duration``, no decoding).
    """
    with path.open("rb") as file:
        reader = local_reader(file, path.stat().st_size)
        found = header_duration(reader)
        if found is not None and found.at_least and not (max_seconds is not None and found.longer_than(max_seconds)):
            found = mp3_scanned_duration(reader) or found
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
    An MP3 that libsndfile decodes short of the length its frame headers give
    (a variable-bit-rate MP3 without a frame count: libsndfile stops where the
    first frame's bit rate says the file ends) is decoded again with FFmpeg
    (PyAV), so no song reaches the server cut short.
    """
    label = name or str(path)
    header = file_duration(path, max_seconds)
    if header is not None and header.longer_than(max_seconds):
        raise too_long(header.seconds, max_seconds, label, header)
    try:
        samples, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    except (soundfile.LibsndfileError, RuntimeError) as exc:
        raise BadInputError(f"{label} is not audio that can be decoded ({FORMATS}): {exc}") from None
    if header is not None and header.format == "mp3" and header.exact and samples.shape[0] / rate < header.seconds - CUT_SHORT:
        samples, rate = ffmpeg_decoded(path, label)
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


def ffmpeg_decoded(path: Path, label: str) -> tuple[np.ndarray, int]:
    """Every sample of ``path`` decoded by FFmpeg (PyAV) as float32 [frames, channels], and the sample rate."""
    import av

    try:
        with av.open(str(path)) as container:
            stream = container.streams.audio[0]
            rate = stream.rate
            resampler = av.AudioResampler(format="fltp", layout=stream.layout, rate=rate)
            planes = [plane.to_ndarray() for frame in container.decode(stream) for plane in resampler.resample(frame)]
    except (av.FFmpegError, IndexError) as exc:
        raise BadInputError(f"{label} is not audio that can be decoded ({FORMATS}): {exc}") from None
    if not planes:
        raise BadInputError(f"{label} holds no audio samples")
    return np.ascontiguousarray(np.concatenate(planes, axis=1).T, dtype=np.float32), rate
