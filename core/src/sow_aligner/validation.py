"""Checks on one request's tensors, before any model work.

Each check raises InvalidRequest with a message that names the problem and
the limit; the caller turns it into a per-request HTTP 400.
"""
from __future__ import annotations

import numpy as np

from .errors import InvalidRequest
from .lyrics import decode_utf8


def one_clip(audio: np.ndarray) -> np.ndarray:
    """The single waveform of a request whose AUDIO tensor is [1, N].

    Returns a 1-D float32 view. Raises InvalidRequest for another rank, a
    batch dimension other than 1, no samples, or non-finite samples.
    """
    if audio.ndim != 2 or audio.shape[0] != 1:
        raise InvalidRequest(
            f"AUDIO must have shape [1, samples] (one mono 16 kHz clip per request); got {list(audio.shape)}"
        )
    clip = audio[0]
    if clip.size == 0:
        raise InvalidRequest("AUDIO is empty: send at least one sample of 16 kHz mono audio")
    bad = int(np.count_nonzero(~np.isfinite(clip)))
    if bad:
        raise InvalidRequest(f"AUDIO has {bad} non-finite samples (NaN or infinity); samples must lie in [-1, 1]")
    return clip.astype(np.float32, copy=False)


def check_duration(seconds: float, max_seconds: float) -> None:
    """InvalidRequest when a clip of ``seconds`` is past the limit."""
    if seconds > max_seconds:
        raise InvalidRequest(f"audio is {seconds:.2f} s long; the limit is {max_seconds:g} s")


def one_string(values: np.ndarray | str | None, name: str) -> str | None:
    """The UTF-8 text of a [1, 1] string tensor (or the text itself), or None when it was not sent."""
    if values is None or isinstance(values, str):
        return values
    if values.size != 1:
        raise InvalidRequest(f"{name} must have shape [1, 1] (one string per request); got {list(values.shape)}")
    item = values.reshape(-1)[0]
    if isinstance(item, str):
        return item
    return decode_utf8(bytes(item), name)
