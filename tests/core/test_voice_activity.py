"""silero_vad's model code in-process: the package's weights, its frame-by-frame results, the test song."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from sow_aligner import voice_activity
from sow_qwen3_contract.quality import voiced_fraction
from sow_qwen3_contract.tensors import SAMPLE_RATE
from support.audio import noise, speech
from support.song import LONG_SONG, song_audio, truth


@pytest.fixture(scope="module")
def vad():
    module = voice_activity
    return module.SileroVad(module.SegmentSettings())


@pytest.fixture(scope="module")
def stock_model():
    """silero-vad as its README loads it: load_silero_vad(), the TorchScript model run frame by frame."""
    threads = torch.get_num_threads()
    from silero_vad import load_silero_vad

    model = load_silero_vad()
    torch.set_num_threads(threads)
    return model


def stock_probabilities(model, audio: np.ndarray) -> np.ndarray:
    """What silero_vad.get_speech_timestamps computes: one model call per 512 samples, the last one padded."""
    model.reset_states()
    samples = torch.from_numpy(audio)
    out = []
    for start in range(0, samples.numel(), 512):
        chunk = samples[start:start + 512]
        chunk = torch.nn.functional.pad(chunk, (0, 512 - chunk.numel()))
        out.append(model(chunk, SAMPLE_RATE).item())
    return np.array(out, dtype=np.float32)


def test_weights_come_from_the_installed_package():
    path = voice_activity.package_weights()
    assert path.name == "silero_vad.jit" and "site-packages" in str(path)


def test_importing_silero_vad_keeps_the_callers_torch_threads():
    assert torch.get_num_threads() >= 1
    before = torch.get_num_threads()
    voice_activity._import_segmenter()
    assert torch.get_num_threads() == before


def test_probabilities_equal_the_stock_frame_by_frame_model(vad, stock_model):
    clip = np.concatenate([noise(1.0, seed=4, level=0.05), speech(4.0), np.zeros(700, dtype=np.float32)])
    ours = vad.frame_probabilities(clip)
    stock = stock_probabilities(stock_model, clip)
    assert ours.shape == stock.shape == (-(-clip.size // 512),)
    assert stock.max() > 0.9 and stock.min() < 0.1, "the clip must hold speech and non-speech"
    np.testing.assert_allclose(ours, stock, atol=1e-4)


def test_segments_equal_get_speech_timestamps(vad, stock_model):
    from silero_vad import get_speech_timestamps

    audio = song_audio()[: 20 * SAMPLE_RATE]
    expected = get_speech_timestamps(torch.from_numpy(audio), stock_model, return_seconds=False)
    result = vad.run(audio)
    assert len(expected) >= 4
    assert [(round(s * SAMPLE_RATE), round(e * SAMPLE_RATE)) for s, e in zip(result.segment_start, result.segment_end)] == [
        (segment["start"], segment["end"]) for segment in expected]


# Speech has pauses at commas; after the long song's 25-45 s breaks silero takes a moment to rise, so its
# lines measure 0.72-0.79 at the least (still above the 0.70 pass line).
@pytest.mark.parametrize("name, line_floor", [("synthetic_song", 0.8), (LONG_SONG, 0.7)])
def test_the_vad_finds_the_test_songs_lines_and_not_its_gaps(vad, name, line_floor):
    song, expected = song_audio(name), truth(name)
    result = vad.run(song)
    segments = list(zip(result.segment_start.tolist(), result.segment_end.tolist()))
    for line in expected.lines:
        assert voiced_fraction(line.start, line.end, segments) > line_floor, line
    for start, end in expected.gaps:
        # The VAD pads a segment by 30 ms and may run on by a fraction of a second after a line:
        # the gap's inner part, 0.5 s in from each edge, holds no voice.
        assert voiced_fraction(start + 0.5, end - 0.5, segments) == 0.0, (start, end)
        assert voiced_fraction(start, end, segments) < 0.15, (start, end)
