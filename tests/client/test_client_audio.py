"""Decoding to what the server takes: 16 kHz mono float32, from files of other rates and channel counts."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sow_qwen3 import BadInputError
from sow_qwen3.audio import load_audio
from sow_qwen3_contract.tensors import SAMPLE_RATE
from support.audio import speech, write_clip


def test_16k_mono_wav_round_trips_to_16_bit_precision(tmp_path: Path):
    source = speech(3.0)
    decoded = load_audio(write_clip(tmp_path / "a.wav", source), 300)
    assert decoded.dtype == np.float32 and decoded.shape == source.shape
    assert np.max(np.abs(decoded - source)) <= 1 / 32768 + 1e-7


@pytest.mark.parametrize("rate", [8000, 22050, 44100, 48000])
def test_stereo_is_mixed_down_and_resampled(tmp_path: Path, rate: int):
    source = speech(3.0)
    decoded = load_audio(write_clip(tmp_path / "a.flac", source, rate=rate, channels=2), 300)
    assert decoded.shape == source.shape  # 3 s at 16 kHz whatever the file's rate
    expected = 0.75 * source  # the mean of the channel and its half-level copy
    band = slice(1600, -1600)  # away from the resampler's edges
    if rate == 8000:  # an 8 kHz file keeps nothing above 4 kHz: compare what it can hold
        assert np.corrcoef(decoded[band], expected[band])[0, 1] > 0.9
    else:
        assert np.sqrt(np.mean((decoded[band] - expected[band]) ** 2)) < 0.01 * np.sqrt(np.mean(expected ** 2)) + 2e-4
    assert np.max(np.abs(decoded)) <= 1.0


def test_samples_are_clipped_to_the_unit_range(tmp_path: Path):
    loud = np.full(SAMPLE_RATE, 0.9, dtype=np.float32)
    loud[::7] = 1.0
    decoded = load_audio(write_clip(tmp_path / "loud.ogg", loud, rate=44100), 300)
    assert np.max(np.abs(decoded)) <= 1.0


def test_an_empty_file_and_a_non_audio_file_are_bad_input(tmp_path: Path):
    empty = write_clip(tmp_path / "empty.wav", np.zeros(0, dtype=np.float32))
    with pytest.raises(BadInputError, match="holds no audio samples"):
        load_audio(empty, 300)
    text = tmp_path / "lyrics.mp3"
    text.write_text("奇异恩典\n", encoding="utf-8")
    with pytest.raises(BadInputError, match=r"lyrics\.mp3 is not audio that can be decoded"):
        load_audio(text, 300)


def test_the_limit_is_checked_on_the_decoded_length_too(tmp_path: Path):
    path = write_clip(tmp_path / "a.wav", speech(3.0))
    with pytest.raises(BadInputError, match=r"a\.wav is 3\.0 s long; the limit is 2\.5 s"):
        load_audio(path, 2.5)
