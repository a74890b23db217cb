import numpy as np
import pytest

from sow_aligner.errors import InvalidRequest
from sow_aligner.validation import check_duration, one_clip, one_string
from sow_qwen3_contract.tensors import SAMPLE_RATE


def test_one_clip_returns_the_waveform():
    audio = np.linspace(-1, 1, 32, dtype=np.float32)[None, :]
    clip = one_clip(audio)
    assert clip.shape == (32,) and clip.dtype == np.float32
    assert np.shares_memory(clip, audio)


@pytest.mark.parametrize("shape", [(32,), (2, 16), (1, 2, 16)])
def test_wrong_rank_or_batch(shape):
    with pytest.raises(InvalidRequest, match=r"AUDIO must have shape \[1, samples\].*got " + re_list(shape)):
        one_clip(np.zeros(shape, dtype=np.float32))


def re_list(shape):
    return r"\[" + r", ".join(str(n) for n in shape) + r"\]"


def test_empty_audio():
    with pytest.raises(InvalidRequest, match="AUDIO is empty"):
        one_clip(np.zeros((1, 0), dtype=np.float32))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_samples_are_counted(bad):
    audio = np.zeros((1, 100), dtype=np.float32)
    audio[0, [3, 50]] = bad
    with pytest.raises(InvalidRequest, match="AUDIO has 2 non-finite samples"):
        one_clip(audio)


def test_duration_limit_is_inclusive_and_named():
    check_duration(300.0, 300)
    with pytest.raises(InvalidRequest, match=r"audio is 300\.01 s long; the limit is 300 s"):
        check_duration((300 * SAMPLE_RATE + 160) / SAMPLE_RATE, 300)


def test_one_string():
    assert one_string(None, "LANGUAGE") is None
    assert one_string(np.array([[b"zh"]], dtype=object), "LANGUAGE") == "zh"
    assert one_string(np.array([[b"\xe4\xb8\xbb"]], dtype=object), "LYRICS") == "主"
    with pytest.raises(InvalidRequest, match=r"LYRICS must have shape \[1, 1\].*got \[1, 2\]"):
        one_string(np.array([[b"a", b"b"]], dtype=object), "LYRICS")
    with pytest.raises(InvalidRequest, match="LYRICS is not valid UTF-8"):
        one_string(np.array([[b"\xc3\x28"]], dtype=object), "LYRICS")
