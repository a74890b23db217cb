"""The review server's HTTP API (``sow-qwen3 review``, the real CLI process) against the real tritonserver.

The songs are the synthetic song with its first chorus moved into an instrumental gap (see support.browser).
"""
from __future__ import annotations

import http.client
import json
import urllib.parse
from pathlib import Path

import pytest

from sow_qwen3 import Client
from sow_qwen3.check import check_timing
from sow_qwen3.review.server import MAX_BODY_BYTES
from sow_qwen3.timings import read_timing
from sow_qwen3_contract.tensors import SAMPLE_RATE
from support.browser import MOVED, lrc_starts, request, review_folder, start_review
from support.infer import API_KEY

pytestmark = pytest.mark.server  # the review server asks the real tritonserver


@pytest.fixture()
def folder(tmp_path: Path) -> tuple[Path, Path]:
    return review_folder(tmp_path / "catalogue")


@pytest.fixture()
def review(keyed_server, folder):
    manifest, out = folder
    running = start_review([str(manifest), "--out-dir", str(out)], keyed_server.http_url, API_KEY)
    yield running
    running.stop()


def test_songs_lists_worst_first_and_a_song_has_its_evidence(review):
    status, songs = request(review, "GET", "/api/songs")
    assert status == 200
    assert {song["name"] for song in songs} == {"song", "moved"}
    assert all(set(song) >= {"name", "verdict", "flagged_lines", "reviewed"} for song in songs)
    status, song = request(review, "GET", "/api/songs/song")
    assert status == 200
    assert set(song) >= {"name", "duration_seconds", "verdict", "voiced", "lines"}
    assert song["duration_seconds"] == pytest.approx(56.04, abs=0.05)
    assert song["voiced"] and all(start < end for start, end in song["voiced"])
    lines = song["lines"]
    assert [line["index"] for line in lines] == list(range(10))
    assert set(lines[0]) >= {"index", "text", "start", "end", "flags", "voiced_fraction", "confidence"}
    for index in MOVED:  # moved into the gap: nobody sings there
        assert "unvoiced" in lines[index]["flags"] and lines[index]["voiced_fraction"] < 0.3
    assert song["verdict"] in ("review", "fail")
    status, songs = request(review, "GET", "/api/songs")
    assert [song["verdict"] for song in songs if song["name"] == "song"] == [song["verdict"]]


def test_fixing_the_moved_lines_turns_the_verdict_and_save_writes_every_file(review, folder):
    _, out = folder
    original_json = (out / "song.json").read_text(encoding="utf-8")
    truth = {4: (22.014, 26.12), 5: (26.62, 30.5)}
    body = {"lines": [{"index": index, "start": start, "end": end} for index, (start, end) in truth.items()]}
    status, judged = request(review, "POST", "/api/songs/song/judge", body)
    assert status == 200
    assert all("unvoiced" not in judged["lines"][index]["flags"] for index in truth)
    assert (out / "song.json").read_text(encoding="utf-8") == original_json  # judging writes nothing
    status, saved = request(review, "PUT", "/api/songs/song", body)
    assert status == 200 and saved["verdict"] == judged["verdict"]
    assert saved["lines"] == judged["lines"]
    assert (out / "song.orig.json").read_text(encoding="utf-8") == original_json
    document = json.loads((out / "song.json").read_text(encoding="utf-8"))
    assert [document["lines"][index]["start"] for index in truth] == [22.014, 26.62]
    assert [line.get("edited", False) for line in document["lines"]] == [index in truth for index in range(10)]
    assert document["quality"]["verdict"] == saved["verdict"]
    assert lrc_starts(out / "song.lrc")[4:6] == [22.01, 26.62]
    quality = (out / "quality.csv").read_text(encoding="utf-8").splitlines()
    assert quality[0].split(",")[:2] == ["name", "verdict"] and "reviewed" in quality[0].split(",")
    row = dict(zip(quality[0].split(","), quality[1].split(",")))
    assert row["name"] == "song" and row["verdict"] == saved["verdict"] and row["reviewed"] == "yes"
    status, songs = request(review, "GET", "/api/songs")
    assert [song["reviewed"] for song in songs if song["name"] == "song"] == [True]


def test_a_second_save_keeps_the_aligners_output_as_orig(review, folder):
    _, out = folder
    original = (out / "moved.lrc").read_text(encoding="utf-8")
    for start in (22.0, 22.5):
        status, _ = request(review, "PUT", "/api/songs/moved",
                            {"lines": [{"index": 4, "start": start}, {"index": 5, "start": 26.62}]})
        assert status == 200
    assert (out / "moved.orig.lrc").read_text(encoding="utf-8") == original
    assert lrc_starts(out / "moved.lrc")[4] == 22.5
    status, song = request(review, "GET", "/api/songs/moved")
    assert song["lines"][4]["edited"] and not song["lines"][3]["edited"]


def test_realign_answers_a_proposal_for_exactly_the_span_and_saves_nothing(review, folder):
    _, out = folder
    before = {path.name: path.read_bytes() for path in out.iterdir()}
    status, proposal = request(review, "POST", "/api/songs/song/realign", {"first": 4, "last": 5})
    assert status == 200, proposal
    assert [line["index"] for line in proposal["lines"]] == [4, 5]
    starts = [line["start"] for line in proposal["lines"]]
    assert 13.119 <= starts[0] <= starts[1] <= 35.39  # between the neighbours' starts, in song time
    assert proposal["low"] == pytest.approx(15.014 - 0.5, abs=0.01) and proposal["high"] == pytest.approx(35.89, abs=0.01)
    assert all(set(line) >= {"flags", "voiced_fraction", "confidence"} for line in proposal["lines"])
    assert proposal["verdict"] in ("pass", "review", "fail")
    assert {path.name: path.read_bytes() for path in out.iterdir()} == before


def test_audio_is_the_original_bytes_with_ranges(review, folder):
    manifest, _ = folder
    data = (manifest.parent / "synthetic_song.ogg").read_bytes()
    status, whole = request(review, "GET", "/api/songs/song/audio")
    assert status == 200 and whole == data
    status, part = request(review, "GET", "/api/songs/song/audio", headers={"Range": "bytes=100-199"})
    assert status == 206 and part == data[100:200]
    status, tail = request(review, "GET", "/api/songs/song/audio", headers={"Range": "bytes=-50"})
    assert status == 206 and tail == data[-50:]
    status, _ = request(review, "GET", "/api/songs/song/audio", headers={"Range": f"bytes={len(data)}-"})
    assert status == 416


def test_the_api_refuses_a_missing_or_wrong_token(review):
    assert request(review, "GET", "/api/songs", token=None)[0] == 403
    assert request(review, "GET", "/api/songs", token="wrong")[0] == 403
    assert request(review, "GET", "/api/songs", token=None,
                   headers={"Authorization": f"Bearer {review.token}"})[0] == 200


def test_a_foreign_host_is_refused(review):
    status, answer = request(review, "GET", "/api/songs", headers={"Host": "attacker.example:80"})
    assert status == 403 and "Host" in answer["error"]
    status, _ = request(review, "GET", "/", token=None, headers={"Host": "attacker.example"})
    assert status == 403


@pytest.mark.parametrize("name", ["../catalogue", "..%2Fcatalogue.csv", "%2Fetc%2Fpasswd", "song.json", "nothing"])
def test_no_name_outside_the_catalogue_is_served(review, name):
    status, answer = request(review, "GET", f"/api/songs/{name}")
    assert status == 404, answer
    status, _ = request(review, "GET", f"/api/songs/{name}/audio")
    assert status == 404


@pytest.mark.parametrize("body, message", [
    ({"lines": [{"index": 5, "start": 10.0}]}, "never decrease"),
    ({"lines": [{"index": 10, "start": 55.0}]}, "no line with index"),
    ({"lines": [{"index": 9, "start": 99.0}]}, "outside the audio"),
    ({"lines": [{"index": 1, "start": -1}]}, "outside the audio"),
    ({"lines": [{"index": 1, "start": "8"}]}, "number"),
    ({"lines": [{"index": 1, "start": 8.0, "end": 7.0}]}, "before it starts"),
    ({"lines": [{"index": 1, "start": 8.0}, {"index": 1, "start": 8.1}]}, "twice"),
    ({"times": []}, "expected"),
])
def test_a_bad_change_is_400_and_writes_nothing(review, folder, body, message):
    _, out = folder
    before = {path.name: path.read_bytes() for path in out.iterdir()}
    status, answer = request(review, "PUT", "/api/songs/song", body)
    assert status == 400 and message in answer["error"]
    assert {path.name: path.read_bytes() for path in out.iterdir()} == before


def test_a_body_over_the_cap_is_refused_unread(review):
    parts = urllib.parse.urlsplit(review.base)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        connection.putrequest("PUT", f"/api/songs/song?token={review.token}")
        connection.putheader("Content-Length", str(MAX_BODY_BYTES + 1))
        connection.endheaders()  # the body is never sent: the server answers from the header
        assert connection.getresponse().status == 413
    finally:
        connection.close()


def test_a_save_that_cannot_be_written_changes_no_file(review, folder):
    """NAME.lrc is a folder: the rename onto it fails, also as root (a read-only mode would not stop root),
    after NAME.json and the .orig copy were already renamed into place, so the rollback is what is tested."""
    _, out = folder
    (out / "song.lrc").mkdir()
    before = {path.name: path.read_bytes() for path in out.iterdir() if path.is_file()}
    status, answer = request(review, "PUT", "/api/songs/song",
                             {"lines": [{"index": 4, "start": 22.0}, {"index": 5, "start": 26.62}]})
    assert status == 500 and "not saved" in answer["error"]
    assert {path.name: path.read_bytes() for path in out.iterdir() if path.is_file()} == before
    assert (out / "song.lrc").is_dir() and not list((out / "song.lrc").iterdir())
    assert not [path for path in out.iterdir() if path.name.endswith(".partial")]
    status, songs = request(review, "GET", "/api/songs")
    assert [song["reviewed"] for song in songs if song["name"] == "song"] == [False]


def test_one_song_review_saves_beside_its_timing(keyed_server, tmp_path):
    manifest, out = review_folder(tmp_path / "one")
    running = start_review([str(manifest.parent / "synthetic_song.ogg"), str(out / "moved.lrc")],
                           keyed_server.http_url, API_KEY)
    try:
        status, songs = request(running, "GET", "/api/songs")
        assert status == 200 and [song["name"] for song in songs] == ["moved"]
        status, _ = request(running, "PUT", "/api/songs/moved",
                            {"lines": [{"index": 4, "start": 22.0}, {"index": 5, "start": 26.62}]})
        assert status == 200
    finally:
        running.stop()
    assert lrc_starts(out / "moved.lrc")[4] == 22.0 and (out / "moved.orig.lrc").is_file()
    assert not (out / "quality.csv").exists()
    assert urllib.parse.urlsplit(running.url).hostname == "127.0.0.1"


def test_an_lrc_song_is_judged_as_check_judges_it(review, folder, keyed_server):
    manifest, out = folder
    client = Client(url=keyed_server.http_url, api_key=API_KEY, timeout=120)
    audio, _ = client.load(str(manifest.parent / "synthetic_song.ogg"))
    report = check_timing(read_timing(out / "moved.lrc"), client.voice_activity(audio).segments,
                          audio.size / SAMPLE_RATE, client.quality_thresholds())
    status, song = request(review, "GET", "/api/songs/moved")
    assert status == 200 and song["verdict"] == report.verdict
    assert [line["flags"] for line in song["lines"]] == [list(line.flags) for line in report.lines]
    assert [line["voiced_fraction"] for line in song["lines"]] == [round(line.voiced_fraction, 3) for line in report.lines]
