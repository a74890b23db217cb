"""scripts/eval_quality.py end to end: two real servers (re-alignment off and on) on the tiny checkpoint,
the test songs of tests/data, and a table whose numbers a hand computation from the JSON outputs repeats."""
from __future__ import annotations

import json
import statistics
import subprocess
import sys

import pytest

from support.song import DATA, LONG_SONG, REPO, SONGS

pytestmark = pytest.mark.server

SCRIPT = REPO / "scripts" / "eval_quality.py"
WARNING = "THESE NUMBERS MEAN NOTHING"


def run(*args: str, timeout: float = 1200) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout,
                          cwd=REPO)


@pytest.fixture(scope="module")
def evaluation(tiny_model_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("eval-quality")
    done = run(str(DATA), "--model-dir", str(tiny_model_dir), "--out-dir", str(out))
    assert done.returncode == 0, done.stderr[-4000:]
    return done, out


def table_rows(stdout: str) -> dict[tuple[str, str], dict[str, str]]:
    """The printed table's rows by (mode, song), each as {column: cell}."""
    lines = [line for line in stdout.splitlines() if line.startswith("| ")]
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    rows = {}
    for line in lines[1:]:
        cells = dict(zip(header, (cell.strip() for cell in line.strip("|").split("|"))))
        rows[(cells["mode"], cells["song"])] = cells
    return rows


def by_hand(out, mode: str, names: list[str]) -> dict[str, str]:
    """The row's figures computed from the JSON outputs and the reference LRCs, without the client's eval."""
    errors, flagged, realigned = [], 0, 0
    for name in names:
        document = json.loads((out / mode / f"{name}.json").read_text(encoding="utf-8"))
        reference = []
        for row in (DATA / f"{name}.lrc").read_text(encoding="utf-8").splitlines():
            minutes, rest = row[1:].split(":", 1)
            seconds, text = rest.split("]", 1)
            reference.append((text, int(minutes) * 60 + float(seconds)))
        assert [line["text"] for line in document["lines"]] == [text for text, _ in reference]
        errors += [abs(line["start"] - start) for line, (_, start) in zip(document["lines"], reference)]
        flagged += document["quality"]["flagged_lines"]
        realigned += sum(1 for line in document["lines"] if line["pass"] > 1)
    # eval's JSON rounds a share to 4 decimals before the table shows it as a percentage
    share = lambda limit: f"{round(sum(e <= limit for e in errors) / len(errors), 4):.1%}"  # noqa: E731
    return {"lines": str(len(errors)), "mean abs error (s)": f"{statistics.fmean(errors):.3f}",
            "median abs error (s)": f"{statistics.median(errors):.3f}", "within 0.3 s": share(0.3),
            "within 1 s": share(1.0), "flagged lines": str(flagged), "re-aligned lines": str(realigned)}


def test_the_table_repeats_a_hand_computation_from_the_json_outputs(evaluation):
    done, out = evaluation
    rows = table_rows(done.stdout)
    assert set(rows) == {(mode, song) for mode in ("off", "on") for song in (*SONGS, "all 2 songs")}
    for mode in ("off", "on"):
        for song, names in ((LONG_SONG, [LONG_SONG]), ("all 2 songs", list(SONGS))):
            expected = by_hand(out, mode, names)
            assert {key: rows[(mode, song)][key] for key in expected} == expected, (mode, song)
        assert float(rows[(mode, "all 2 songs")]["time (s)"]) > 0
    assert rows[("off", "all 2 songs")]["re-aligned lines"] == "0"


def test_the_modes_are_the_single_pass_and_the_configured_passes(evaluation):
    done, out = evaluation
    from sow_qwen3_server.launcher import config_parameter

    passes = config_parameter(REPO / "model_repository", "realign_passes")
    assert f"off: SOW_QWEN3_REALIGN_PASSES=0; on: SOW_QWEN3_REALIGN_PASSES={passes}" in done.stdout
    for name in SONGS:
        single = json.loads((out / "off" / f"{name}.json").read_text(encoding="utf-8"))
        assert {line["pass"] for line in single["lines"]} == {1}
    long_song = json.loads((out / "on" / f"{LONG_SONG}.json").read_text(encoding="utf-8"))
    assert [item["text"] for item in long_song["skipped"]][:2] == ["[Intro]", "[Verse 1]"]


def test_the_tiny_checkpoint_is_called_meaningless_loudly(evaluation):
    done, _ = evaluation
    assert WARNING in done.stderr
    assert done.stdout.index(WARNING) > done.stdout.index("| on | all 2 songs |"), "the warning follows the table"


def test_a_folder_without_songs_is_refused(tmp_path):
    (tmp_path / "lonely.lrc").write_text("[00:01.00]la\n", encoding="utf-8")
    done = run(str(tmp_path), "--model-dir", str(tmp_path), timeout=120)  # refused before any server starts
    assert done.returncode == 2
    assert "lonely.lrc has no audio file" in done.stderr and "holds no song" in done.stderr


def test_url_must_be_given_twice(tmp_path):
    done = run(str(tmp_path), "--url", "127.0.0.1:1", timeout=120)
    assert done.returncode == 2 and "--url must be given 2 times" in done.stderr
