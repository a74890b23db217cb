"""Fetching audio from S3 (moto's real S3 server on loopback), HTTP and local files, with the early checks.

No aligner server runs here: every case is refused, or succeeds, before a request would be sent.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from sow_qwen3 import AuthError, BadInputError, Client, S3Settings, ServerUnavailableError
from sow_qwen3.sources import fetched_audio
from sow_qwen3_contract.tensors import SAMPLE_RATE
from sow_qwen3_tools.local_server import free_ports
from support.audio import mp3_without_frame_count, noise, write_clip

LYRICS = "奇异恩典\n何等甘甜"
EARLY = re.compile(r"from its (\S+) header: read (\d+) of (\d+) bytes")


@pytest.fixture(scope="module")
def long_files(tmp_path_factory) -> dict[str, Path]:
    """301 s songs, one over the limit: MP3 (Xing header), WAV and FLAC."""
    folder = tmp_path_factory.mktemp("long")
    audio = noise(301.0, seed=5, level=0.05)
    return {suffix: write_clip(folder / f"long.{suffix}", audio, rate=8000) for suffix in ("mp3", "wav", "flac", "ogg")}


@pytest.fixture()
def offline_client(s3_store) -> Client:
    """A client whose aligner server does not exist: anything that reaches it fails as unavailable."""
    return Client(url=f"127.0.0.1:{free_ports(1)[0]}", s3=s3_store.settings(), timeout=20)


def early_refusal(error: BadInputError) -> tuple[str, int, int]:
    match = EARLY.search(str(error))
    assert match, f"not refused from the header: {error}"
    return match.group(1), int(match.group(2)), int(match.group(3))


@pytest.mark.parametrize("suffix", ["mp3", "wav", "flac", "ogg"])
def test_over_length_s3_object_is_refused_from_its_header(offline_client, s3_store, long_files, suffix):
    url = s3_store.put(f"long/{suffix}-song.{suffix}", long_files[suffix])
    with pytest.raises(BadInputError) as caught:
        offline_client.align(url, LYRICS)
    message = str(caught.value)
    assert f"{url} is 301.0 s long; the limit is 300 s" in message
    kind, read, size = early_refusal(caught.value)
    assert kind.startswith(suffix if suffix != "ogg" else "ogg/")
    assert size == long_files[suffix].stat().st_size
    assert read <= (3 if suffix == "ogg" else 1) * 16 * 1024  # the first block (and the last 16 KiB, for Ogg)
    assert read < size / 4


@pytest.mark.parametrize("suffix", ["mp3", "wav"])
def test_over_length_http_file_is_refused_after_small_ranged_reads(offline_client, http_files, long_files, suffix):
    url = http_files.add(long_files[suffix], f"long-{suffix}.{suffix}")
    with pytest.raises(BadInputError) as caught:
        offline_client.align(url, LYRICS)
    _, read, size = early_refusal(caught.value)
    assert read < size / 4
    assert http_files.hits[f"long-{suffix}.{suffix}"] == 2  # the size probe and one header block: no download


def test_long_cbr_mp3_without_a_frame_count_is_refused_from_its_frames(offline_client, http_files, tmp_path):
    path = mp3_without_frame_count(tmp_path / "cbr.mp3", noise(330.0, seed=7), "CONSTANT")
    url = http_files.add(path, "bare-cbr.mp3")
    with pytest.raises(BadInputError) as caught:
        offline_client.align(url, LYRICS)
    seconds = float(re.search(r"is ([\d.]+) s long; the limit is 300 s", str(caught.value)).group(1))
    assert seconds == pytest.approx(330.0, rel=0.02)
    kind, read, size = early_refusal(caught.value)
    assert kind == "mp3" and read <= 2 * 16 * 1024 and read < size / 4
    assert http_files.hits["bare-cbr.mp3"] == 3  # the size probe, the first block and one in the middle


def test_vbr_mp3_with_a_quiet_intro_is_not_refused_from_its_first_frames(s3_store, http_files, tmp_path):
    """28 s: 20 s of silence at 8 kbit/s, then 8 s of loud noise. The first block alone says about 47 s."""
    audio = np.concatenate([np.zeros(20 * SAMPLE_RATE, np.float32), noise(8.0, seed=9)])
    path = mp3_without_frame_count(tmp_path / "vbr.mp3", audio, "VARIABLE")
    client = Client(url=f"127.0.0.1:{free_ports(1)[0]}", s3=s3_store.settings(), max_audio_seconds=30, timeout=20)
    for source in (http_files.add(path, "bare-vbr.mp3"), str(path)):
        with pytest.raises(ServerUnavailableError):  # decoded (28 s fits), then no server answers
            client.align(source, LYRICS)


def test_over_length_file_without_ranged_reads_is_refused_after_decoding(offline_client, http_files, long_files):
    url = http_files.add(long_files["wav"], "norange-long.wav")
    with pytest.raises(BadInputError, match=r"is 301\.0 s long; the limit is 300 s$"):
        offline_client.align(url, LYRICS)


def test_over_length_local_file_is_refused(offline_client, long_files):
    with pytest.raises(BadInputError, match=r"long\.mp3 is 301\.0 s long; the limit is 300 s"):
        offline_client.align(str(long_files["mp3"]), LYRICS)


def test_a_lower_limit_applies_to_the_early_check(s3_store, tmp_path):
    url = s3_store.put("short/limit.wav", write_clip(tmp_path / "a.wav", noise(12.0, seed=6)))
    client = Client(url=f"127.0.0.1:{free_ports(1)[0]}", s3=s3_store.settings(), max_audio_seconds=10)
    with pytest.raises(BadInputError, match=r"is 12\.0 s long; the limit is 10 s \(from its wav header"):
        client.align(url, LYRICS)


def test_missing_s3_object(offline_client, s3_store):
    with pytest.raises(BadInputError, match=r"s3://worship/no/such-song\.mp3 does not exist"):
        offline_client.align(f"s3://{s3_store.bucket}/no/such-song.mp3", LYRICS)


def test_missing_bucket(offline_client):
    with pytest.raises(BadInputError, match=r"s3://no-such-bucket/song\.mp3 does not exist"):
        offline_client.align("s3://no-such-bucket/song.mp3", LYRICS)


@pytest.mark.parametrize("change", [{"access_key_id": "AKIAWRONGWRONGWRONG1"}, {"secret_access_key": "wrong"}])
def test_wrong_credential_is_an_auth_error(s3_store, tmp_path, change):
    url = s3_store.put("auth/song.wav", write_clip(tmp_path / "a.wav", noise(2.0, seed=7)))
    client = Client(url=f"127.0.0.1:{free_ports(1)[0]}", s3=s3_store.settings(**change))
    with pytest.raises(AuthError, match=r"s3://worship/auth/song\.wav: the storage refused the credentials") as caught:
        client.align(url, LYRICS)
    assert s3_store.secret_access_key not in str(caught.value)
    assert "wrong" not in str(caught.value).replace("WRONG", "") or "secret" not in change


def test_oversized_s3_object_is_refused_before_download(s3_store, tmp_path):
    path = write_clip(tmp_path / "big.wav", noise(30.0, seed=8))
    url = s3_store.put("big/song.wav", path)
    size = path.stat().st_size
    with pytest.raises(BadInputError, match=rf"{url} is {size} bytes; the limit is 100000 bytes"):
        with fetched_audio(url, s3=s3_store.settings(), max_bytes=100_000, max_seconds=300, timeout=20):
            pytest.fail("an oversized object must not be fetched")


def test_oversized_http_object_is_refused_from_the_size_probe(http_files, tmp_path):
    path = write_clip(tmp_path / "big.wav", noise(30.0, seed=8))
    url = http_files.add(path, "big.wav")
    with pytest.raises(BadInputError, match=r"big\.wav is \d+ bytes; the limit is 100000 bytes"):
        with fetched_audio(url, s3=None, max_bytes=100_000, max_seconds=300, timeout=20):
            pytest.fail("an oversized object must not be fetched")
    assert http_files.hits["big.wav"] == 1


def test_s3_object_is_fetched_through_the_default_bucket(s3_store, tmp_path):
    path = write_clip(tmp_path / "ok.flac", noise(3.0, seed=9), rate=44100, channels=2)
    s3_store.put("ok/song.flac", path)
    with fetched_audio("s3:///ok/song.flac", s3=s3_store.settings(), max_bytes=10**7, max_seconds=300,
                       timeout=20) as fetched:
        assert fetched.path.read_bytes() == path.read_bytes()
        assert fetched.header is not None and fetched.header.seconds == pytest.approx(3.0)
        assert 0 < fetched.header_bytes <= 16 * 1024
        folder = fetched.path.parent
    assert not folder.exists()  # the temporary download is gone


def test_unreachable_storage_is_unavailable():
    settings = S3Settings(endpoint_url=f"http://127.0.0.1:{free_ports(1)[0]}", access_key_id="a",
                          secret_access_key="b")
    with pytest.raises(ServerUnavailableError, match="cannot reach the storage endpoint"):
        with fetched_audio("s3://worship/song.mp3", s3=settings, max_bytes=10**7, max_seconds=300, timeout=5):
            pass


def test_missing_http_file_and_local_file(offline_client, http_files, tmp_path):
    with pytest.raises(BadInputError, match=r"/absent\.mp3 does not exist \(HTTP 404\)"):
        offline_client.align(f"{http_files.url}/absent.mp3", LYRICS)
    with pytest.raises(BadInputError, match=r"absent\.wav does not exist or is not a file"):
        offline_client.align(str(tmp_path / "absent.wav"), LYRICS)


def test_a_file_that_is_not_audio(offline_client, s3_store, tmp_path):
    path = tmp_path / "notes.mp3"
    path.write_bytes(np.random.default_rng(1).bytes(50_000))
    url = s3_store.put("bad/notes.mp3", path)
    with pytest.raises(BadInputError, match=r"notes\.mp3 is not audio that can be decoded \(WAV, FLAC, OGG or MP3\)"):
        offline_client.align(url, LYRICS)


def test_empty_lyrics_are_refused_before_any_download(offline_client, http_files, long_files):
    http_files.add(long_files["wav"], "lyrics-check.wav")
    with pytest.raises(BadInputError, match="the lyrics are empty"):
        offline_client.align(f"{http_files.url}/lyrics-check.wav", " \n\t\n")
    assert http_files.hits["lyrics-check.wav"] == 0


def test_a_presigned_query_string_never_appears_in_messages(offline_client, http_files):
    with pytest.raises(BadInputError) as caught:
        offline_client.align(f"{http_files.url}/absent.mp3?X-Amz-Signature=topsecret", LYRICS)
    assert "topsecret" not in str(caught.value)


def test_without_any_credentials_the_request_is_anonymous_and_refused_by_name(s3_store, tmp_path, monkeypatch):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    url = s3_store.put("anon/song.wav", write_clip(tmp_path / "a.wav", noise(2.0, seed=12)))
    with pytest.raises(AuthError, match=r"refused anonymous access .*set SOW_QWEN3_R2_ACCESS_KEY_ID"):
        with fetched_audio(url, s3=S3Settings(endpoint_url=s3_store.endpoint_url), max_bytes=10**7,
                           max_seconds=300, timeout=20):
            pass
