"""Can I trust these timings? check, eval, --fail-on, quality.csv and --plot, through the installed CLI.

``check`` runs against the real server's silero_vad on the committed synthetic
song (tests/data, made by scripts/make_test_song.py) and its true LRC.
"""
from __future__ import annotations

import csv
import json
import os
import struct
import warnings
from pathlib import Path

import pytest
from test_client_cli import run

from sow_qwen3.evaluate import evaluate
from sow_qwen3.plot import Bar, Lane, plot_timeline
from sow_qwen3.timings import parse_lrc, read_timing
from support.infer import API_KEY
from support.song import SONG_AUDIO, SONG_LRC, SONG_LYRICS, truth

pytestmark = pytest.mark.server  # needs the real tritonserver

# Lines 4 and 8 (the chorus's first line, both times) moved into the instrumental gap before them.
MOVED = {4: 17.5, 8: 41.0}
STACKED = (7, 8, 9)  # the last three lines piled onto line 7's start


@pytest.fixture()
def env(keyed_server) -> dict[str, str]:
    """The user's environment: our server and its key; no other SOW_QWEN3_* variable."""
    base = {key: value for key, value in os.environ.items() if not key.startswith("SOW_QWEN3_")}
    return {**base, "SOW_QWEN3_TRITON_URL": keyed_server.http_url, "SOW_QWEN3_API_KEY": API_KEY}


def lrc_with(path: Path, starts: dict[int, float]) -> Path:
    """The true LRC with the starts of some lines replaced."""
    rows = []
    for index, line in enumerate(truth().lines):
        start = starts.get(index, line.start)
        rows.append(f"[{int(start // 60):02d}:{start % 60:05.2f}]{line.text}")
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


def check(env, timing: Path, *extra: str):
    done = run("check", str(SONG_AUDIO), str(timing), "--json", *extra, env=env)
    assert done.returncode in (0, 7), done.stderr
    return done, json.loads(done.stdout)


def flagged(report: dict) -> dict[int, list[str]]:
    return {line["index"]: line["flags"] for line in report["lines"] if line["flags"]}


def test_check_passes_the_true_lrc(env):
    done, report = check(env, SONG_LRC, "--fail-on", "review")
    assert done.returncode == 0, done.stderr
    assert report["verdict"] == "pass" and flagged(report) == {}
    assert report["mean_voiced_fraction"] >= 0.70
    assert [line["text"] for line in report["lines"]] == [line.text for line in truth().lines]
    assert list(report["lines"][0]) == ["index", "text", "start", "end", "voiced_fraction", "flags"]


def test_check_flags_exactly_the_lines_moved_into_instrumental_gaps(env, tmp_path):
    done, report = check(env, lrc_with(tmp_path / "moved.lrc", MOVED), "--fail-on", "review")
    assert flagged(report) == {4: ["unvoiced"], 8: ["unvoiced"]}
    assert report["verdict"] == "review"  # 2 of 10 lines: under the 25 % that fails a song
    assert done.returncode == 7


def test_check_flags_exactly_the_lines_stacked_on_one_timestamp(env, tmp_path):
    pile = truth().lines[STACKED[0]].start
    done, report = check(env, lrc_with(tmp_path / "stacked.lrc", {i: pile for i in STACKED}), "--fail-on", "fail")
    assert set(flagged(report)) == set(STACKED)
    assert "collapsed" in flagged(report)[8] and "collapsed" in flagged(report)[9]
    assert "zero_length" in flagged(report)[7]  # its window ends where the next line starts: at once
    assert report["verdict"] == "fail" and done.returncode == 7  # 3 of 10 lines flagged


def test_check_takes_our_json_with_its_ends(env, tmp_path):
    lines = truth().lines
    document = {"version": 2, "lines": [{"index": i, "text": line.text, "start": line.start, "end": line.end}
                                        for i, line in enumerate(lines)]}
    (tmp_path / "song.json").write_text(json.dumps(document, ensure_ascii=False), encoding="utf-8")
    _, report = check(env, tmp_path / "song.json")
    assert [line["end"] for line in report["lines"]] == [line.end for line in lines]  # [start, end], not LRC windows
    assert report["verdict"] == "pass" and report["mean_voiced_fraction"] > 0.85


def test_check_prints_a_table_without_json(env):
    done = run("check", str(SONG_AUDIO), str(SONG_LRC), env=env)
    assert done.returncode == 0, done.stderr
    rows = done.stdout.splitlines()
    assert rows[0].split() == ["#", "start", "end", "voiced", "flags", "text"]
    assert rows[-1].startswith("verdict: pass (mean voiced fraction ")
    assert len(rows) == 2 + len(truth().lines)


def test_lrc_parsing_repeats_sorts_and_skips_tags():
    lines = parse_lrc("[ar:Someone]\n[length: 03:00]\n[00:10.50][01:02.25]Chorus\n[00:05.00]Verse\n[00:07.0]\nplain\n")
    assert [(line.text, line.start) for line in lines] == [("Verse", 5.0), ("Chorus", 10.5), ("Chorus", 62.25)]


def write_lrc(path: Path, rows: list[tuple[float, str]]) -> Path:
    path.write_text("".join(f"[{int(s // 60):02d}:{s % 60:05.2f}]{text}\n" for s, text in rows), encoding="utf-8")
    return path


def test_eval_numbers_equal_a_hand_computation(env, tmp_path):
    reference = write_lrc(tmp_path / "ref.lrc", [(1.0, "a"), (5.0, "b"), (9.0, "c"), (13.0, "d")])
    hypothesis = write_lrc(tmp_path / "hyp.lrc", [(1.2, "a"), (4.0, "b"), (9.0, "c"), (15.5, "d")])
    done = run("eval", str(hypothesis), str(reference), "--json", env=env)
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    # errors +0.2, -1.0, 0.0, +2.5; |errors| sorted 0.0 0.2 1.0 2.5
    assert data["lines"] == 4
    assert data["mean_abs_error_s"] == pytest.approx((0.2 + 1.0 + 0.0 + 2.5) / 4, abs=1e-3)  # 0.925
    assert data["median_abs_error_s"] == pytest.approx((0.2 + 1.0) / 2, abs=1e-3)  # 0.6
    assert data["max_abs_error_s"] == pytest.approx(2.5, abs=1e-3)
    assert data["within_0_3_s"] == 0.5 and data["within_1_0_s"] == 0.75
    assert [line["error_s"] for line in data["per_line"]] == [0.2, -1.0, 0.0, 2.5]
    assert done.stderr == ""


def test_eval_pairs_by_text_when_the_lyrics_differ(env, tmp_path):
    reference = write_lrc(tmp_path / "ref.lrc", [(1.0, "a"), (5.0, "b"), (9.0, "c"), (13.0, "d")])
    hypothesis = write_lrc(tmp_path / "hyp.lrc", [(0.5, "intro"), (1.5, "a"), (9.5, "c"), (12.0, "D")])
    done = run("eval", str(hypothesis), str(reference), "--json", env=env)
    data = json.loads(done.stdout)
    assert [(line["text"], line["error_s"]) for line in data["per_line"]] == [("a", 0.5), ("c", 0.5), ("d", -1.0)]
    assert "the same number of lines but different texts" in done.stderr
    assert "3 lines paired by text in order, 1 hypothesis and 1 reference lines left out" in done.stderr


def test_eval_of_the_true_lrc_against_its_json_truth_is_exact(tmp_path):
    data = {"lines": [{"text": line.text, "start": line.start, "end": line.end} for line in truth().lines]}
    (tmp_path / "truth.json").write_text(json.dumps(data), encoding="utf-8")
    report = evaluate(read_timing(SONG_LRC), read_timing(tmp_path / "truth.json")).data()
    assert report["lines"] == 10 and report["max_abs_error_s"] <= 0.005  # the LRC rounds to the centisecond


def test_align_fail_on_exits_7_and_still_writes(env, tmp_path):
    out = tmp_path / "song.json"
    done = run("align", str(SONG_AUDIO), str(SONG_LYRICS), "--format", "json", "-o", str(out), "--fail-on", "review",
               env=env)
    data = json.loads(out.read_text(encoding="utf-8"))
    verdict = data["quality"]["verdict"]
    assert verdict in ("review", "fail"), "the tiny model's timings cannot pass this song"
    assert done.returncode == 7, done.stderr
    assert f"quality {verdict}" in done.stderr and "at least --fail-on review" in done.stderr
    assert data["version"] == 2 and len(data["lines"]) == 10
    relaxed = run("align", str(SONG_AUDIO), str(SONG_LYRICS), "-o", str(tmp_path / "song.lrc"), env=env)
    assert relaxed.returncode == 0, relaxed.stderr
    assert f"quality: {verdict} (mean voiced fraction" in relaxed.stderr


def test_batch_quality_csv_matches_the_json_outputs(env, tmp_path):
    manifest = tmp_path / "catalogue.csv"
    manifest.write_text(f"{SONG_AUDIO},{SONG_LYRICS},English,one\n{SONG_AUDIO},{SONG_LYRICS},Chinese,two\n",
                        encoding="utf-8")
    out = tmp_path / "out"
    done = run("align-batch", str(manifest), "--out-dir", str(out), "--format", "json", env=env)
    assert done.returncode == 0, done.stderr
    rows = list(csv.DictReader((out / "quality.csv").read_text(encoding="utf-8").splitlines()))
    for row in rows:
        quality = json.loads((out / f"{row['name']}.json").read_text(encoding="utf-8"))["quality"]
        assert row["verdict"] == quality["verdict"]
        assert float(row["mean_voiced_fraction"]) == pytest.approx(quality["mean_voiced_fraction"], abs=1e-3)
        assert int(row["flagged_lines"]) == quality["flagged_lines"]
    assert [row["name"] for row in rows] == ["one", "two"]


def png_size(path: Path) -> tuple[int, int]:
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", header[16:24])


def test_plots_of_align_check_and_eval(env, tmp_path):
    pictures = {name: tmp_path / f"{name}.png" for name in ("align", "check", "eval")}
    for done in (
        run("align", str(SONG_AUDIO), str(SONG_LYRICS), "-o", str(tmp_path / "a.lrc"), "--plot",
            str(pictures["align"]), env=env),
        run("check", str(SONG_AUDIO), str(SONG_LRC), "--plot", str(pictures["check"]), env=env),
        run("eval", str(tmp_path / "a.lrc"), str(SONG_LRC), "--plot", str(pictures["eval"]), "--audio",
            str(SONG_AUDIO), env=env),
    ):
        assert done.returncode == 0, done.stderr
        assert "missing from" not in done.stderr, done.stderr  # matplotlib's missing-glyph warning
    for path in pictures.values():
        width, height = png_size(path)
        assert width >= 1000 and height >= 300


def glyph_warnings(path: Path, families: list[str] | None = None) -> list[str]:
    """matplotlib's warnings while plotting CJK, Hangul, kana and Latin lyrics (``families`` overrides the fonts)."""
    import matplotlib

    lane = Lane("lines", [Bar(0.0, 2.0, "奇异恩典 何等甘甜", "#43a047"), Bar(2.0, 4.0, "주님의 은혜", "#fb8c00"),
                          Bar(4.0, 6.0, "すばらしい恵み", "#e53935"), Bar(6.0, 8.0, "Amazing grace", "#90a4ae")])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if families is None:
            plot_timeline(path, title="字体 test", duration=8.0, lanes=[lane])
        else:
            with matplotlib.rc_context({"font.family": families}):
                import matplotlib.pyplot as plt

                figure = plt.figure()
                figure.text(0.1, 0.5, "奇异恩典 주님 すばらしい")
                figure.savefig(path)
                plt.close(figure)
    return [str(warning.message) for warning in caught if "missing from" in str(warning.message)]


def test_no_glyph_is_missing_for_cjk_lyrics(tmp_path):
    assert glyph_warnings(tmp_path / "cjk.png") == []
    # The check can fail: with the bundled font left out, matplotlib says so.
    assert glyph_warnings(tmp_path / "latin-only.png", ["DejaVu Sans"]) != []


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_client_reads_the_servers_thresholds_and_vad(keyed_server, protocol):
    from sow_qwen3 import Client
    from sow_qwen3_contract.quality import Thresholds
    from sow_qwen3_server import launcher
    from support.song import REPO, song_audio

    expected = Thresholds.from_parameters(launcher.config_parameters(REPO / "model_repository"))
    url = keyed_server.http_url if protocol == "http" else keyed_server.grpc_url
    client = Client(url=url, protocol=protocol, api_key=API_KEY, timeout=120)
    assert client.quality_thresholds() == expected
    activity = client.voice_activity(song_audio())
    assert len(activity.segments) >= 10 and activity.frame_probability.size == -(-song_audio().size // 512)


def vad_inferences(http_url: str) -> int:
    """silero_vad's successful inferences so far, from Triton's statistics endpoint (open without the key)."""
    import urllib.request

    with urllib.request.urlopen(f"http://{http_url}/v2/models/silero_vad/stats", timeout=30) as answer:
        stats = json.load(answer)
    return sum(int(model["inference_stats"]["success"]["count"]) for model in stats["model_stats"])


def test_align_plot_uploads_the_audio_once(keyed_server, env, tmp_path):
    """align --plot draws the voiced segments the alignment answered (VOICED_START / VOICED_END): the server's
    silero_vad runs once per align, for the alignment itself, not a second time for the picture."""
    before = vad_inferences(keyed_server.http_url)
    done = run("align", str(SONG_AUDIO), str(SONG_LYRICS), "-o", str(tmp_path / "a.lrc"), "--plot",
               str(tmp_path / "align.png"), env=env)
    assert done.returncode == 0, done.stderr
    assert "no voiced regions" not in done.stderr, done.stderr
    assert vad_inferences(keyed_server.http_url) - before == 1
    width, height = png_size(tmp_path / "align.png")
    assert width >= 1000 and height >= 300


def test_align_keeps_the_voiced_segments_it_was_judged_against(keyed_server):
    from sow_qwen3 import Client

    client = Client(url=keyed_server.http_url, api_key=API_KEY, timeout=120)
    result = client.align(SONG_AUDIO, SONG_LYRICS, keep_audio=True)
    assert len(result.voiced) >= 10 and result.voiced == client.voice_activity(result.audio).segments
    assert client.align(SONG_AUDIO, SONG_LYRICS).voiced is None
