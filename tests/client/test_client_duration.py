"""Header durations from partial reads, for files soundfile writes in each format."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile

from sow_qwen3 import BadInputError
from sow_qwen3.audio import load_audio
from sow_qwen3.duration import BLOCK_BYTES, RangeReader, header_duration
from sow_qwen3.sources import early_duration
from sow_qwen3_contract.tensors import SAMPLE_RATE
from support.audio import MPEG2_LAYER3_KBPS, mp3_without_frame_count, noise, write_clip


def reader_for(data: bytes) -> RangeReader:
    return RangeReader(lambda start, end: data[start:end + 1], len(data))


@pytest.mark.parametrize("suffix", ["wav", "flac", "mp3", "ogg", "opus"])
@pytest.mark.parametrize("rate, channels", [(8000, 1), (22050, 2), (44100, 2), (48000, 1)])
def test_duration_matches_the_decoder_and_reads_little(tmp_path: Path, suffix: str, rate: int, channels: int):
    if suffix == "opus" and rate in (22050, 44100):
        rate = 24000  # Opus takes 8, 12, 16, 24 and 48 kHz only
    seconds = 7.3
    path = write_clip(tmp_path / f"clip.{suffix}", noise(seconds, seed=rate), rate, channels)
    data = path.read_bytes()
    reader = reader_for(data)
    found = header_duration(reader)
    decoded = soundfile.info(str(path)).duration
    assert found is not None and found.exact
    assert found.seconds == pytest.approx(decoded, abs=1e-3)
    limit = 3 * BLOCK_BYTES if suffix in ("ogg", "opus") else BLOCK_BYTES  # Ogg: the first block and the last 16 KiB
    assert reader.fetched <= min(limit, len(data))


def test_wav_with_a_large_chunk_before_the_samples(tmp_path: Path):
    path = write_clip(tmp_path / "clip.wav", noise(4.0, seed=1), SAMPLE_RATE)
    data = path.read_bytes()
    junk = b"JUNK" + (50_000).to_bytes(4, "little") + bytes(50_000)
    patched = data[:12] + junk + data[12:]
    patched = patched[:4] + (len(patched) - 8).to_bytes(4, "little") + patched[8:]
    reader = reader_for(patched)
    assert header_duration(reader).seconds == pytest.approx(4.0)
    assert reader.fetched < len(patched) / 2


def test_mp3_after_an_id3_tag_with_cover_art(tmp_path: Path):
    data = write_clip(tmp_path / "clip.mp3", noise(5.0, seed=2), 44100, 2).read_bytes()
    body = bytes(40_000)
    size = len(body)
    syncsafe = bytes([(size >> shift) & 0x7F for shift in (21, 14, 7, 0)])
    tagged = b"ID3\x04\x00\x00" + syncsafe + body + data
    reader = reader_for(tagged)
    assert header_duration(reader).seconds == pytest.approx(5.0, abs=1e-3)
    assert reader.fetched <= 3 * BLOCK_BYTES


def test_cbr_mp3_without_a_xing_frame_is_estimated_from_the_bit_rate(tmp_path: Path):
    path = mp3_without_frame_count(tmp_path / "clip.mp3", noise(20.0, seed=3), "CONSTANT")
    reader = reader_for(path.read_bytes())
    found = header_duration(reader)
    assert not found.exact
    assert found.seconds == pytest.approx(20.0, rel=0.02)
    assert reader.fetched <= 2 * BLOCK_BYTES  # the first block and one in the middle


def quiet_intro(intro: float, song: float) -> np.ndarray:
    """Digital silence, then loud noise: a VBR encoder spends its lowest bit rate on the intro."""
    return np.concatenate([np.zeros(int(intro * SAMPLE_RATE), np.float32), noise(song, seed=9)])


def test_vbr_mp3_with_a_quiet_intro_and_no_xing_frame_gives_only_a_lower_bound(tmp_path: Path):
    """The mean frame size of the blocks read would make this 28 s clip over 90 s long: no estimate, a bound."""
    path = mp3_without_frame_count(tmp_path / "clip.mp3", quiet_intro(20.0, 8.0), "VARIABLE")
    data = path.read_bytes()
    head_rates = set()
    at = 0
    while at + 4 <= BLOCK_BYTES:  # by hand: every frame of the first block is an 8 kbit/s one
        head_rates.add(data[at + 2] >> 4)
        at += 72 * MPEG2_LAYER3_KBPS[data[at + 2] >> 4] * 1000 // 16000 + ((data[at + 2] >> 1) & 1)
    assert head_rates == {1}, "the first block alone must look like a constant bit rate for this test to mean anything"
    found = header_duration(reader_for(data))
    assert found is not None and found.at_least and not found.exact
    assert found.seconds <= 28.0 and not found.longer_than(28.0)


@pytest.mark.parametrize("data", [b"", b"not audio at all" * 100, bytes(5000), b"RIFF\x00\x00\x00\x00WAVEdata"])
def test_unknown_or_broken_headers_say_nothing(data: bytes):
    assert header_duration(reader_for(data)) is None


def test_range_reader_fetches_each_block_once():
    data = np.arange(100_000, dtype=np.uint8).tobytes()
    calls = []

    def fetch(start: int, end: int) -> bytes:
        calls.append((start, end))
        return data[start:end + 1]

    reader = RangeReader(fetch, len(data), block=1000)
    assert reader.read(10, 20) == data[10:30]
    assert reader.read(990, 20) == data[990:1010]
    assert reader.read(500, 100) == data[500:600]
    assert calls == [(0, 999), (1000, 1999)]
    assert reader.fetched == 2000
    assert reader.tail(50) == (len(data) - 50, data[-50:])
    assert reader.read(len(data) + 5, 10) == b""


class _Remote:
    """A remote object (s3, http) over ``data``: only what it fetches is read."""

    def __init__(self, data: bytes, name: str = "s3://bucket/long.mp3") -> None:
        self.data, self.name = data, name

    def size(self) -> int:
        return len(self.data)

    def fetch(self, start: int, end: int) -> bytes:
        return self.data[start:end + 1]


def vbr_mp3(tmp_path: Path, seconds: float, seed: int, level: float = 0.3) -> Path:
    return mp3_without_frame_count(tmp_path / f"vbr-{seconds:g}-{seed}.mp3", noise(seconds, seed=seed, level=level), "VARIABLE")


def _no_decoding(monkeypatch) -> None:
    def refuse(*_args, **_kwargs):
        raise AssertionError("the file was decoded before its length was checked")

    monkeypatch.setattr(soundfile, "read", refuse)


@pytest.mark.parametrize("seconds, seed, level", [(60.0, 4, 0.3), (30.0, 5, 0.05), (12.0, 6, 0.3)])
def test_a_vbr_mp3_without_a_frame_count_gets_a_lower_bound_from_a_few_blocks(tmp_path: Path, seconds, seed, level):
    data = vbr_mp3(tmp_path, seconds, seed, level).read_bytes()
    reader = reader_for(data)
    found = header_duration(reader)
    assert found is not None and found.at_least and found.format == "mp3"
    assert 0.25 * seconds < found.seconds <= seconds  # never more than the real length
    assert reader.fetched <= 4 * BLOCK_BYTES


def test_a_remote_vbr_mp3_without_a_frame_count_is_refused_from_the_bytes_read(tmp_path: Path):
    data = vbr_mp3(tmp_path, 60.0, 4).read_bytes()
    with pytest.raises(BadInputError) as refused:
        early_duration(_Remote(data), len(data), 15.0)
    message = str(refused.value)
    assert message.startswith("s3://bucket/long.mp3 is at least "), message
    assert "the limit is 15 s" in message and "mp3 header" in message, message
    read = int(message.split("read ")[1].split(" of")[0])
    assert read <= 4 * BLOCK_BYTES < len(data)


def test_a_local_vbr_mp3_without_a_frame_count_is_refused_before_decoding(tmp_path: Path, monkeypatch):
    path = vbr_mp3(tmp_path, 60.0, 4)
    _no_decoding(monkeypatch)
    with pytest.raises(BadInputError) as refused:
        load_audio(path, 15.0, name="long.mp3")
    message = str(refused.value)
    assert message.startswith("long.mp3 is at least ") and "variable-bit-rate mp3 without a frame count" in message
    assert message.endswith("the limit is 15 s"), message


def test_a_local_vbr_mp3_whose_bound_is_under_the_limit_is_counted_frame_by_frame(tmp_path: Path, monkeypatch):
    """The bound from three blocks (about 18 s) is under the limit; the frame headers say 30 s: refused, not decoded."""
    path = vbr_mp3(tmp_path, 30.0, 5, level=0.05)
    assert not header_duration(reader_for(path.read_bytes())).longer_than(25.0)
    _no_decoding(monkeypatch)
    with pytest.raises(BadInputError) as refused:
        load_audio(path, 25.0, name="clip.mp3")
    assert str(refused.value) == "clip.mp3 is 30.1 s long; the limit is 25 s"


@pytest.mark.parametrize("seconds, seed, level, limit", [(30.0, 5, 0.05, 31.0), (12.0, 6, 0.3, 12.5)])
def test_a_vbr_mp3_without_a_frame_count_under_the_limit_is_accepted(tmp_path: Path, seconds, seed, level, limit):
    path = vbr_mp3(tmp_path, seconds, seed, level)
    data = path.read_bytes()
    assert not header_duration(reader_for(data)).longer_than(limit)
    found, read = early_duration(_Remote(data), len(data), limit)  # the remote check lets it through
    assert found.at_least and read <= 4 * BLOCK_BYTES
    samples = load_audio(path, limit)
    # whole: libsndfile alone stops where the first frame's bit rate says the file ends (12 s of the 30 s)
    assert samples.ndim == 1 and samples.size / SAMPLE_RATE == pytest.approx(seconds, abs=0.2)


def test_a_quiet_intro_vbr_mp3_under_the_limit_is_accepted(tmp_path: Path):
    path = mp3_without_frame_count(tmp_path / "clip.mp3", quiet_intro(20.0, 8.0), "VARIABLE")
    samples = load_audio(path, 30.0)
    assert samples.size / SAMPLE_RATE == pytest.approx(28.0, abs=0.2)
