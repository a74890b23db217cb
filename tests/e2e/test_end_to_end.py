"""From s3:// (moto's real S3 server) to LRC and JSON through the real tritonserver on the tiny checkpoint.

The reference for every timestamp is the server itself: the same decoded audio
sent straight to qwen3_aligner with tritonclient (read through the contract's
decoder, or, where the client's own decoding is under test, off the raw tensors).
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import tritonclient.http as httpclient

from sow_qwen3 import AuthError, BadInputError, Client, Health, ServerUnavailableError, Skipped
from sow_qwen3.audio import load_audio
from sow_qwen3_tools.local_server import free_ports
from support.audio import noise, speech, write_clip
from support.infer import API_KEY, MODEL, Lines, align_grpc, align_http, build_inputs, http_client

pytestmark = pytest.mark.server  # needs the real tritonserver

LYRICS = "奇异恩典 何等甘甜\n\n我罪已得赦免\n  前我失丧 今被寻回  \n。。。\n瞎眼今得看见\n"
TIMED = ["奇异恩典 何等甘甜", "我罪已得赦免", "前我失丧 今被寻回", "。。。", "瞎眼今得看见"]
STAMP = re.compile(r"^\[(\d\d):(\d\d\.\d\d)\](.*)$")
FILES = [("mp3", 44100, 2), ("wav", 16000, 1), ("wav", 48000, 2), ("flac", 22050, 1), ("ogg", 32000, 2),
         ("opus", 48000, 1)]


def server_lines(server, path: Path, lyrics: str = LYRICS, language: str = "Chinese") -> Lines:
    """What qwen3_aligner answers for ``path`` decoded the way the client decodes it."""
    return Lines.of(align_http(server.http_url, load_audio(path, 300), lyrics, language, headers={"api-key": API_KEY}))


def raw_rows(server, path: Path, lyrics: str = LYRICS, language: str = "Chinese") -> list[tuple[str, str]]:
    """qwen3_aligner's LINE_START / LINE_TEXT for ``path``, read straight off the tensors (no decoder of ours),
    as ``lrc_rows`` gives LRC rows: (start to the centisecond, text)."""
    direct = http_client(server.http_url)
    try:
        raw = direct.infer(MODEL, build_inputs(httpclient, load_audio(path, 300), lyrics, language),
                           headers={"api-key": API_KEY})
    finally:
        direct.close()
    return [(f"{float(start):.2f}", text.decode("utf-8"))
            for start, text in zip(raw.as_numpy("LINE_START")[0], raw.as_numpy("LINE_TEXT")[0], strict=True)]


def lrc_rows(text: str) -> tuple[str, list[tuple[str, str]]]:
    rows = text.splitlines()
    stamps = [STAMP.match(row) for row in rows[1:]]
    assert all(stamps), rows
    return rows[0], [(f"{int(m.group(1)) * 60 + float(m.group(2)):.2f}", m.group(3)) for m in stamps]


@pytest.fixture(scope="module")
def song(tmp_path_factory) -> Path:
    return write_clip(tmp_path_factory.mktemp("song") / "song.mp3", speech(9.0), rate=44100, channels=2)


@pytest.mark.parametrize("suffix, rate, channels", FILES, ids=[f"{s}-{r}-{c}ch" for s, r, c in FILES])
def test_s3_song_to_lrc_matches_the_server_to_the_centisecond(client, keyed_server, s3_store, tmp_path,
                                                               suffix, rate, channels):
    path = write_clip(tmp_path / f"song.{suffix}", speech(8.0), rate=rate, channels=channels)
    url = s3_store.put(f"e2e/{suffix}-{rate}-{channels}.{suffix}", path)
    result = client.align(url, LYRICS, language="Chinese", format="lrc")
    expected = server_lines(keyed_server, path)
    assert len(set(expected.start)) >= 3, "the tiny model's starts must vary for this test to mean anything"
    length, rows = lrc_rows(result.lrc_content)
    assert rows == [(f"{start:.2f}", text) for start, text in zip(expected.start, expected.text)]
    assert [text for _, text in rows] == TIMED
    assert result.line_count == len(TIMED) and result.content == result.lrc_content
    assert result.duration_seconds == pytest.approx(8.0, abs=0.01)
    assert length == "[length: 00:08]"
    assert 0 < result.header_bytes <= 3 * 16 * 1024


def test_json_carries_the_servers_lines(client, keyed_server, s3_store, song):
    url = s3_store.put("e2e/json.mp3", song)
    result = client.align(url, LYRICS, language="zh", format="json")
    expected = server_lines(keyed_server, song, language="zh")
    data = result.json_data
    assert data["language"] == "Chinese" == result.language  # the name the server resolved "zh" to
    assert data["line_count"] == len(TIMED) == result.line_count
    assert data["duration_seconds"] == pytest.approx(9.0, abs=0.01)
    assert [(line["text"], line["start"], line["end"]) for line in data["lines"]] == [
        (text, round(start, 3), round(end, 3)) for text, start, end in zip(expected.text, expected.start, expected.end)]
    assert result.content.startswith("{\n") and '"version": 2' in result.content


def test_json_carries_the_servers_evidence(client, keyed_server, song):
    """confidence, voiced_fraction, flags, pass and quality are the server's tensors, NaN as null."""
    data = client.align(str(song), LYRICS, language="zh", format="json").json_data
    direct = http_client(keyed_server.http_url)
    try:
        raw = direct.infer("qwen3_aligner", build_inputs(httpclient, load_audio(song, 300), LYRICS, "zh"),
                           headers={"api-key": API_KEY})
    finally:
        direct.close()

    def known(value):
        return None if value != value else round(float(value), 3)

    flags = [[code for code in item.decode().split(",") if code] for item in raw.as_numpy("LINE_FLAGS")[0]]
    assert [line["confidence"] for line in data["lines"]] == [known(v) for v in raw.as_numpy("LINE_CONFIDENCE")[0]]
    assert [line["voiced_fraction"] for line in data["lines"]] == [known(v) for v in raw.as_numpy("LINE_VOICED")[0]]
    assert [line["flags"] for line in data["lines"]] == flags
    assert [line["pass"] for line in data["lines"]] == raw.as_numpy("LINE_PASS")[0].tolist()
    assert data["lines"][3]["confidence"] is None  # "。。。" has no unit, so no timestamp and no confidence
    assert data["quality"] == {
        "verdict": raw.as_numpy("SONG_VERDICT")[0][0].decode(),
        "mean_voiced_fraction": known(raw.as_numpy("SONG_VOICED")[0][0]),
        "flagged_lines": sum(1 for codes in flags if codes),
    }


def test_markers_never_reach_the_lrc_and_the_json_lists_them(client, keyed_server, song):
    lyrics = "[Verse 1]\n奇异恩典 何等甘甜 (x2)\n\n[Chorus]\n我罪已得赦免\n\n[Chorus]\n"
    sung = ["奇异恩典 何等甘甜"] * 2 + ["我罪已得赦免"] * 2
    skipped = (Skipped(0, "[Verse 1]"), Skipped(3, "[Chorus]"), Skipped(6, "[Chorus]"))
    expected = server_lines(keyed_server, song, lyrics)
    assert expected.text == sung
    as_lrc = client.align(str(song), lyrics)
    _, rows = lrc_rows(as_lrc.lrc_content)  # every row after the length tag is a [mm:ss.xx] stamp
    assert rows == [(f"{start:.2f}", text) for start, text in zip(expected.start, sung)]
    assert "[Chorus]" not in as_lrc.lrc_content and "[Verse 1]" not in as_lrc.lrc_content
    as_json = client.align(str(song), lyrics, format="json")
    assert as_json.skipped == as_lrc.skipped == skipped
    assert as_json.json_data["skipped"] == [{"index": item.index, "text": item.text} for item in skipped]
    assert [line["text"] for line in as_json.json_data["lines"]] == sung


def test_grpc_gives_the_same_lines_as_http(client, keyed_server, http_files, song):
    url = http_files.add(song, "grpc-song.mp3")
    over_grpc = Client(url=keyed_server.grpc_url, protocol="grpc", api_key=API_KEY, timeout=120)
    result = over_grpc.align(url, LYRICS)
    direct = Lines.of(align_grpc(keyed_server.grpc_url, load_audio(song, 300), LYRICS, "Chinese",
                                 headers={"triton-grpc-protocol-api-key": API_KEY}))
    assert [(line.text, line.start, line.end) for line in result.lines] == list(zip(direct.text, direct.start,
                                                                                   direct.end))
    assert result.lrc_content == client.align(str(song), LYRICS).lrc_content


def test_language_hint_reaches_the_server(client, keyed_server, song):
    japanese = "すばらしい恵み\n" + LYRICS  # Japanese splits these into other units than Chinese does
    result = client.align(str(song), japanese, language="Japanese")
    expected = server_lines(keyed_server, song, japanese, "Japanese")
    as_chinese = server_lines(keyed_server, song, japanese, "Chinese")
    assert expected.end != as_chinese.end, "the hint must change the answer for this test to mean anything"
    assert [(line.start, line.end) for line in result.lines] == list(zip(expected.start, expected.end))


@pytest.mark.parametrize("protocol", ["http", "grpc"])
@pytest.mark.parametrize("hint, name", [("cmn", "Chinese"), ("ZHO", "Chinese"), ("jpn", "Japanese"),
                                        ("yue", "Cantonese"), ("eng", "English")])
def test_json_records_the_language_the_server_resolved(keyed_server, song, protocol, hint, name):
    url = keyed_server.grpc_url if protocol == "grpc" else keyed_server.http_url
    result = Client(url=url, protocol=protocol, api_key=API_KEY, timeout=120).align(str(song), LYRICS, language=hint,
                                                                                  format="json")
    assert result.language == name and result.json_data["language"] == name


@pytest.mark.parametrize("protocol", ["http", "grpc"])
@pytest.mark.parametrize("language", ["Klingon", "not ready", "api-key restricted", "unavailable queue"])
def test_the_servers_refusal_keeps_its_message(keyed_server, song, protocol, language):
    """A 400 / INVALID_ARGUMENT is bad input whatever words its message holds (here, the echoed hint)."""
    url = keyed_server.grpc_url if protocol == "grpc" else keyed_server.http_url
    client = Client(url=url, protocol=protocol, api_key=API_KEY, timeout=120)
    with pytest.raises(BadInputError, match=f"(?i)unsupported language '{language}'"):
        client.align(str(song), LYRICS, language=language)


@pytest.mark.parametrize("protocol", ["http", "grpc"])
@pytest.mark.parametrize("key", [None, "wrong-key"])
def test_a_missing_or_wrong_api_key_is_an_auth_error(keyed_server, song, protocol, key, monkeypatch):
    monkeypatch.delenv("SOW_QWEN3_API_KEY", raising=False)
    url = keyed_server.grpc_url if protocol == "grpc" else keyed_server.http_url
    with pytest.raises(AuthError, match="the server refused the API key"):
        Client(url=url, protocol=protocol, api_key=key).align(str(song), LYRICS)


def test_health_of_a_ready_and_of_an_absent_server(keyed_server):
    assert Client(url=keyed_server.http_url).health() == Health(live=True, ready=True)
    grpc = Client(url=keyed_server.grpc_url, protocol="grpc").health()
    assert grpc.live and grpc.ready
    absent = Client(url=f"127.0.0.1:{free_ports(1)[0]}").health()
    assert not absent.live and not absent.ready and "cannot reach" in absent.detail


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_an_absent_server_is_unavailable(song, protocol):
    client = Client(url=f"127.0.0.1:{free_ports(1)[0]}", protocol=protocol, timeout=10)
    with pytest.raises(ServerUnavailableError):
        client.align(str(song), LYRICS)


def test_noise_still_yields_one_ordered_line_per_lyric_line(client, tmp_path):
    path = write_clip(tmp_path / "noise.wav", noise(6.0, seed=11), rate=8000)
    result = client.align(str(path), LYRICS)
    starts = [line.start for line in result.lines]
    assert [line.text for line in result.lines] == TIMED
    assert starts == sorted(starts) and all(0 <= s <= 6.0 for s in starts)


def test_a_url_with_its_scheme_and_lyrics_from_a_file(client, keyed_server, song, tmp_path):
    lyrics = tmp_path / "lyrics.txt"
    lyrics.write_bytes(b"\xef\xbb\xbf" + LYRICS.encode("utf-8"))  # with a BOM, as some editors save it
    other = Client(url=f"http://{keyed_server.http_url}/", api_key=API_KEY, timeout=120)
    result = other.align(str(song), lyrics)
    length, rows = lrc_rows(result.lrc_content)
    expected = raw_rows(keyed_server, song)  # the server's own tensors, not the client's reading of them
    assert len({start for start, _ in expected}) >= 3, "the tiny model's starts must vary for this test to mean anything"
    assert (length, rows) == ("[length: 00:09]", expected)
    assert [text for _, text in rows] == TIMED  # the BOM never reaches the first line
    assert result.lrc_content == client.align(str(song), LYRICS).lrc_content
