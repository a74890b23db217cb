"""``sow-qwen3 review`` with no aligner server answering (the real CLI process; no tritonserver is started):
the page still works, judging with config.pbtxt's shipped thresholds and the JSON's recorded evidence."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from sow_qwen3_tools.local_server import free_ports
from support.browser import MOVED, SOW_QWEN3, request, review_folder, start_review

RECORDED = 0.9  # the voiced fraction the JSON records for every line but the moved ones
MOVED_RECORDED = 0.1


@pytest.fixture()
def offline(tmp_path: Path):
    manifest, out = review_folder(tmp_path / "catalogue")
    document = json.loads((out / "song.json").read_text(encoding="utf-8"))
    for index, line in enumerate(document["lines"]):
        moved = index in MOVED
        line["voiced_fraction"] = MOVED_RECORDED if moved else RECORDED
        line["flags"] = ["unvoiced"] if moved else []
    (out / "song.json").write_text(json.dumps(document), encoding="utf-8")
    (nobody,) = free_ports(1)  # a loopback port nothing listens on
    running = start_review([str(manifest), "--out-dir", str(out)], f"127.0.0.1:{nobody}")
    yield running, out
    running.stop()


def test_without_a_server_the_review_judges_with_the_recorded_evidence(offline):
    review, out = offline
    assert any("working offline" in line for line in review.stderr)
    status, song = request(review, "GET", "/api/songs/song")
    assert status == 200, song
    lines = song["lines"]
    assert song["voiced"] == [] and song["vad_note"].startswith("voice activity not measured")
    for line in lines:
        moved = line["index"] in MOVED
        assert line["voiced_fraction"] == (MOVED_RECORDED if moved else RECORDED)
        assert line["flags"] == (["unvoiced"] if moved else [])
    # mean (8 x 0.9 + 2 x 0.1) / 10 = 0.74 >= 0.70, 2 of 10 lines flagged (< 25 %): review
    assert song["verdict"] == "review" and song["mean_voiced_fraction"] == pytest.approx(0.74)

    # A line set by hand has no recorded evidence: not measured, and the song cannot pass.
    first = min(MOVED)
    body = {"lines": [{"index": first, "start": lines[first]["start"] + 0.2}]}
    status, judged = request(review, "POST", "/api/songs/song/judge", body)
    assert status == 200, judged
    assert judged["lines"][first]["voiced_fraction"] is None and judged["lines"][first]["flags"] == ["vad_unavailable"]
    assert judged["verdict"] == "review"
    status, saved = request(review, "PUT", "/api/songs/song", body)
    assert status == 200 and saved["lines"] == judged["lines"]
    assert json.loads((out / "song.json").read_text(encoding="utf-8"))["lines"][first]["edited"] is True

    status, answer = request(review, "POST", "/api/songs/song/realign", {"first": first, "last": first})
    assert status == 502 and "error" in answer

    status, lrc_song = request(review, "GET", "/api/songs/moved")  # an LRC records no evidence
    assert status == 200 and all("vad_unavailable" in line["flags"] for line in lrc_song["lines"])


@pytest.mark.parametrize("host", ["0.0.0.0", "::"])
def test_an_address_for_every_address_is_a_usage_error(tmp_path, host):
    # The Host check trusts only the address given, so 0.0.0.0 would refuse every request: say so at once.
    manifest, out = review_folder(tmp_path / "catalogue")
    done = subprocess.run([str(SOW_QWEN3), "review", str(manifest), "--out-dir", str(out), "--no-browser",
                           "--host", host], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and f"{host} listens on every address" in done.stderr
