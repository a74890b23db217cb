"""``sow_qwen3.evaluate``: line pairing in file order and by a text alignment, each against a hand computation."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from sow_qwen3.check import check_timing
from sow_qwen3.evaluate import evaluate, evaluate_folders
from sow_qwen3.timings import lrc_in_file_order, parse_lrc, read_timing
from sow_qwen3_contract.quality import Thresholds

VERSE_1 = ["v1 a", "v1 b", "v1 c", "v1 d"]
VERSE_2 = ["v2 a", "v2 b", "v2 c", "v2 d"]
CHORUS = ["c a", "c b", "c c", "c d"]
SONG = VERSE_1 + CHORUS + VERSE_2 + CHORUS  # 16 lines, the chorus sung twice


def write_lrc(path: Path, rows: list[tuple[float, str]]) -> Path:
    path.write_text("".join(f"[{int(s // 60):02d}:{s % 60:05.2f}]{text}\n" for s, text in rows), encoding="utf-8")
    return path


def summary(report) -> dict:
    data = report.data()
    return {key: data[key] for key in ("lines", "mean_abs_error_s", "median_abs_error_s", "max_abs_error_s",
                                       "within_0_3_s", "within_1_0_s")}


def pairs(report) -> list[tuple[int, str, float]]:
    return [(pair.index, pair.text, round(pair.error, 3)) for pair in report.pairs]


def test_same_lyrics_with_a_line_before_the_one_above_pair_in_file_order(tmp_path):
    # reference: line i at 10 + 2.5 i; hypothesis: the same, but line 12 (the second chorus's first line,
    # 40.0 s) 3 s early at 37.0 s, before line 11 (37.5 s). Paired in file order: 15 errors 0.0 and one -3.0.
    starts = [10 + 2.5 * i for i in range(16)]
    reference = write_lrc(tmp_path / "ref.lrc", list(zip(starts, SONG)))
    early = [start - 3.0 if i == 12 else start for i, start in enumerate(starts)]
    hypothesis = write_lrc(tmp_path / "hyp.lrc", list(zip(early, SONG)))
    report = evaluate(read_timing(hypothesis), read_timing(reference))
    assert report.note == ""
    assert pairs(report) == [(i, text, -3.0 if i == 12 else 0.0) for i, text in enumerate(SONG)]
    # mean 3 / 16 = 0.1875; median of fifteen 0.0 and one 3.0 = 0.0; 15 of 16 within 0.3 s and 1.0 s
    assert summary(report) == {"lines": 16, "mean_abs_error_s": 0.188, "median_abs_error_s": 0.0,
                               "max_abs_error_s": 3.0, "within_0_3_s": 0.9375, "within_1_0_s": 0.9375}


def test_a_missing_line_leaves_each_chorus_line_with_its_own_occurrence(tmp_path):
    # reference (8 lines, 4 s apart): v1a v1b ca cb v2a v2b ca cb; the hypothesis lacks v1b.
    ref_texts = ["v1 a", "v1 b", "c a", "c b", "v2 a", "v2 b", "c a", "c b"]
    reference = write_lrc(tmp_path / "ref.lrc", [(4.0 * i, text) for i, text in enumerate(ref_texts)])
    hyp_rows = [(0.5, "v1 a"), (8.0, "c a"), (12.5, "c b"), (16.0, "v2 a"), (20.0, "v2 b"), (25.0, "c a"), (28.0, "c b")]
    hypothesis = write_lrc(tmp_path / "hyp.lrc", hyp_rows)
    report = evaluate(read_timing(hypothesis), read_timing(reference))
    # reference lines 0, 2..7 paired; errors +0.5, 0, +0.5, 0, 0, +1.0 (25 - 24), 0
    assert pairs(report) == [(0, "v1 a", 0.5), (2, "c a", 0.0), (3, "c b", 0.5), (4, "v2 a", 0.0), (5, "v2 b", 0.0),
                             (6, "c a", 1.0), (7, "c b", 0.0)]
    # mean 2 / 7 = 0.2857; |errors| sorted 0 0 0 0 0.5 0.5 1.0: median 0; within 0.3 s 4/7, within 1.0 s 7/7
    assert summary(report) == {"lines": 7, "mean_abs_error_s": 0.286, "median_abs_error_s": 0.0,
                               "max_abs_error_s": 1.0, "within_0_3_s": 0.5714, "within_1_0_s": 1.0}
    assert report.note == ("the lyrics differ (7 hypothesis lines, 8 reference lines); 7 lines paired by text in order, "
                           "0 hypothesis and 1 reference lines left out")


def test_an_extra_line_stays_unpaired(tmp_path):
    # reference: ca cb v ca cb at 0 3 6 9 12; the hypothesis sings an extra "yeah" after the first chorus.
    reference = write_lrc(tmp_path / "ref.lrc", [(0.0, "c a"), (3.0, "c b"), (6.0, "v"), (9.0, "c a"), (12.0, "c b")])
    hypothesis = write_lrc(tmp_path / "hyp.lrc", [(0.1, "c a"), (3.2, "C  B"), (4.0, "yeah"), (6.0, "v"),
                                                   (8.0, "c a"), (12.4, "c b")])
    report = evaluate(read_timing(hypothesis), read_timing(reference))
    # errors +0.1, +0.2 ("C  B" is "c b" once whitespace and case are folded), 0.0, -1.0, +0.4; "yeah" unpaired
    assert pairs(report) == [(0, "c a", 0.1), (1, "c b", 0.2), (2, "v", 0.0), (3, "c a", -1.0), (4, "c b", 0.4)]
    # mean 1.7 / 5 = 0.34; |errors| sorted 0 0.1 0.2 0.4 1.0: median 0.2; within 0.3 s 3/5, within 1.0 s 5/5
    assert summary(report) == {"lines": 5, "mean_abs_error_s": 0.34, "median_abs_error_s": 0.2,
                               "max_abs_error_s": 1.0, "within_0_3_s": 0.6, "within_1_0_s": 1.0}
    assert "1 hypothesis and 0 reference lines left out" in report.note


def test_out_of_time_order_lines_with_other_lyrics_pair_by_text(tmp_path):
    # both out of time order (line "b" before "a"); the hypothesis replaces "c" by "x": a, b, d pair.
    reference = write_lrc(tmp_path / "ref.lrc", [(5.0, "a"), (4.0, "b"), (9.0, "c"), (13.0, "d")])
    hypothesis = write_lrc(tmp_path / "hyp.lrc", [(5.5, "a"), (3.0, "b"), (9.0, "x"), (13.0, "d")])
    report = evaluate(read_timing(hypothesis), read_timing(reference))
    # errors +0.5, -1.0, 0.0: mean 0.5, median 0.5, within 0.3 s 1/3, within 1.0 s 3/3
    assert pairs(report) == [(0, "a", 0.5), (1, "b", -1.0), (3, "d", 0.0)]
    assert summary(report) == {"lines": 3, "mean_abs_error_s": 0.5, "median_abs_error_s": 0.5,
                               "max_abs_error_s": 1.0, "within_0_3_s": 0.3333, "within_1_0_s": 1.0}
    assert "the same number of lines but different texts" in report.note


def test_lrc_keeps_file_order_and_expands_several_stamps_at_their_place():
    text = "[ar:x]\n[00:05.00]Verse\n[01:10.00][00:40.00]Chorus\n[00:20.00]Bridge\n"
    assert [(line.text, line.start) for line in lrc_in_file_order(text)] == [
        ("Verse", 5.0), ("Chorus", 40.0), ("Chorus", 70.0), ("Bridge", 20.0)]
    assert [(line.text, line.start) for line in parse_lrc(text)] == [
        ("Verse", 5.0), ("Bridge", 20.0), ("Chorus", 40.0), ("Chorus", 70.0)]


def test_check_judges_an_lrc_in_time_order(tmp_path):
    timing = read_timing(write_lrc(tmp_path / "song.lrc", [(5.0, "a"), (1.0, "b"), (9.0, "c")]))
    thresholds = Thresholds(unvoiced_below=0.1, zero_length_below_s=0.05, collapsed_within_s=0.1,
                            low_confidence_below=0.1, review_voiced_below=0.5, fail_voiced_below=0.2,
                            fail_flagged_fraction=0.5, lrc_window_s=3.0)
    report = check_timing(timing, [(0.0, 20.0)], 20.0, thresholds)
    # windows [1, 4], [5, 8], [9, 12]: each min(next start, start + 3 s)
    assert [(line.text, line.start, line.end) for line in report.lines] == [
        ("b", 1.0, 4.0), ("a", 5.0, 8.0), ("c", 9.0, 12.0)]
    assert report.flagged_lines == 0


@pytest.mark.parametrize("rows", [[(1.0, "a")], [(1.0, "a"), (2.0, "a")]])
def test_identical_files_pair_exactly(tmp_path, rows):
    path = write_lrc(tmp_path / "song.lrc", rows)
    report = evaluate(read_timing(path), read_timing(path))
    assert report.note == "" and [pair.error for pair in report.pairs] == [0.0] * len(rows)


SOW_QWEN3 = str(Path(sys.executable).parent / "sow-qwen3")


def folders(tmp_path: Path) -> tuple[Path, Path]:
    # song "one": errors +0.5, -1.0; song "two": error +2.0; "only-hyp" and "only-ref" on one side only
    hyp, ref = tmp_path / "hyp", tmp_path / "ref"
    hyp.mkdir()
    ref.mkdir()
    write_lrc(hyp / "one.lrc", [(1.5, "a"), (4.0, "b")])
    write_lrc(ref / "one.lrc", [(1.0, "a"), (5.0, "b")])
    write_lrc(hyp / "two.lrc", [(12.0, "c")])
    write_lrc(ref / "two.lrc", [(10.0, "c")])
    write_lrc(hyp / "only-hyp.lrc", [(1.0, "x")])
    write_lrc(ref / "only-ref.lrc", [(1.0, "y")])
    (hyp / "quality.csv").write_text("name,verdict\n", encoding="utf-8")
    return hyp, ref


def test_folders_pair_by_stem_and_pool_all_paired_lines(tmp_path):
    hyp, ref = folders(tmp_path)
    result = evaluate_folders(hyp, ref)
    assert [song.name for song in result.songs] == ["one", "two"]
    assert result.missing_hypothesis == ("only-ref",) and result.missing_reference == ("only-hyp",)
    # pooled |errors| 0.5, 1.0, 2.0: mean 3.5 / 3 = 1.1667, median 1.0; within 0.3 s 0/3, within 1.0 s 2/3
    assert result.pooled().summary() == {"lines": 3, "mean_abs_error_s": 1.167, "median_abs_error_s": 1.0,
                                         "max_abs_error_s": 2.0, "within_0_3_s": 0.0, "within_1_0_s": 0.6667}


def test_cli_eval_of_folders_and_of_a_manifest(tmp_path):
    hyp, ref = folders(tmp_path)
    done = subprocess.run([SOW_QWEN3, "eval", str(hyp), str(ref), "--json"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert [(song["name"], song["mean_abs_error_s"]) for song in data["songs"]] == [("one", 0.75), ("two", 2.0)]
    assert data["pooled"]["songs"] == 2 and data["pooled"]["mean_abs_error_s"] == 1.167
    assert data["missing_hypothesis"] == ["only-ref"] and data["missing_reference"] == ["only-hyp"]
    assert "no hypothesis for 1 songs: only-ref" in done.stderr
    manifest = tmp_path / "songs.csv"
    manifest.write_text("source,lyrics,language,name\na.mp3,a.txt,en,two\nb.mp3,b.txt,en,gone\n", encoding="utf-8")
    done = subprocess.run([SOW_QWEN3, "eval", str(hyp), str(ref), "--manifest", str(manifest)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1].split() == ["pooled", "1", "2.000", "2.000", "2.000", "0%", "0%"]
    assert "no hypothesis for 1 songs: gone" in done.stderr


def test_cli_eval_folder_exit_codes(tmp_path):
    hyp, ref = folders(tmp_path)
    usage = subprocess.run([SOW_QWEN3, "eval", str(hyp), str(ref / "one.lrc")], capture_output=True, text=True,
                           timeout=60)
    assert usage.returncode == 2 and "must both be folders" in usage.stderr
    (ref / "two.lrc").write_text("no stamps\n", encoding="utf-8")
    bad = subprocess.run([SOW_QWEN3, "eval", str(hyp), str(ref)], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 3 and "two: " in bad.stderr
    assert bad.stdout.splitlines()[-1].split()[:2] == ["pooled", "2"]  # song "one" still reported


def test_a_reviewed_folder_evaluates_each_song_once_from_its_json(tmp_path):
    # The review saves NAME.json and NAME.lrc and keeps the aligner's output as NAME.orig.json: one song, read
    # from its JSON (the LRC has fewer decimals and no evidence), the .orig copy no song of its own.
    hyp, ref = folders(tmp_path)
    def timed(start: float) -> str:
        return json.dumps({"version": 2, "lines": [{"index": 0, "text": "c", "start": start, "end": start + 1}]})
    (hyp / "two.json").write_text(timed(11.0), encoding="utf-8")
    (hyp / "two.orig.json").write_text(timed(30.0), encoding="utf-8")
    write_lrc(hyp / "two.orig.lrc", [(30.0, "c")])
    result = evaluate_folders(hyp, ref)
    assert [(song.name, song.hypothesis.name) for song in result.songs] == [("one", "one.lrc"), ("two", "two.json")]
    assert [pair.error for pair in result.songs[1].report.pairs] == [1.0]
    assert result.missing_reference == ("only-hyp",)
