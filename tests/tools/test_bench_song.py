"""scripts/bench_song.py: its flagged-share judge, and a quick run end to end on the tiny checkpoint
(the real-size run is the lead's, on a quiet machine; this one only proves the script runs through)."""
from __future__ import annotations

import ctypes.util
import math
import re
import subprocess
import sys

import pytest

from sow_aligner.evidence import SlotEvidence, judge
from sow_qwen3_contract.quality import LOW_CONFIDENCE, is_flagged
from sow_qwen3_tools.bench_song import fixed_share_judge, flagged_lines, spread_evenly
from support.fake_align import alignment_of
from support.song import REPO, config_thresholds


@pytest.mark.parametrize("count, share, run_lines", [(45, 0.25, 3), (10, 0.25, 3), (7, 0.5, 2), (40, 0.25, 1),
                                                     (3, 0.25, 5)])
def test_exactly_the_share_of_lines_is_chosen_in_runs(count, share, run_lines):
    chosen = flagged_lines(count, share, run_lines)
    assert len(chosen) == len(set(chosen)) == round(share * count)
    assert all(0 <= index < count for index in chosen) and chosen == sorted(chosen)
    runs = sum(1 for i, index in enumerate(chosen) if i == 0 or chosen[i - 1] != index - 1)
    assert runs <= math.ceil(len(chosen) / run_lines) or run_lines == 1


def test_the_judge_flags_exactly_the_chosen_lines_whatever_the_times():
    thresholds = config_thresholds()
    judged = fixed_share_judge(judge, thresholds, [1, 2])
    evidence = SlotEvidence([0.9] * 4, [0] * 4, [0.9] * 4, [False] * 4, [False] * 4)
    starts, ends = [0.0, 0.0, 5.0, 9.0], [0.0, 4.0, 8.0, 9.0]  # lines 0 and 3 would be flagged zero_length
    real = judge(starts, ends, evidence, [(0.0, 10.0)], thresholds)
    assert is_flagged(real.line_flags[0]) and is_flagged(real.line_flags[3])
    result = judged(starts, ends, evidence, [(0.0, 10.0)])
    assert result.line_flags == [[], [LOW_CONFIDENCE], [LOW_CONFIDENCE], []]
    assert result.line_voiced == real.line_voiced
    assert result.verdict != "pass"


def test_spreading_keeps_the_units_and_evidence_and_times_them_at_an_even_pace():
    lines = ["a b", "c", "- -", "d e f"]  # the third line has no unit
    piled = alignment_of(lines, [0, 10] * 6, [0.5 + 0.01 * i for i in range(12)], 12.0)  # every unit at 0 s
    spread = spread_evenly(piled)
    assert spread.unit_text == piled.unit_text and spread.unit_line == piled.unit_line
    assert spread.evidence == piled.evidence and spread.duration == 12.0
    assert spread.unit_start == [0.0, 2.0, 4.0, 6.0, 8.0, 10.0] and spread.unit_end == [2.0, 4.0, 6.0, 8.0, 10.0, 12.0]
    assert spread.lines.starts == [0.0, 4.0, 6.0, 6.0] and spread.lines.ends == [4.0, 6.0, 6.0, 12.0]


@pytest.mark.server
def test_a_quick_run_on_the_tiny_checkpoint_measures_both_parts(tiny_model_dir, tmp_path):
    report = tmp_path / "benchmarks.md"
    report.write_text("# Benchmarks\n\nhand-written notes\n")
    done = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "bench_song.py"), "--quick", "--model-dir", str(tiny_model_dir),
         "--output", str(report), "--log-dir", str(tmp_path / "logs")],
        capture_output=True, text=True, timeout=1800, cwd=REPO)
    assert done.returncode == 0, done.stderr[-4000:]
    text = report.read_text()
    assert text.startswith("# Benchmarks\n\nhand-written notes\n")
    section = re.search(r"<!-- bench\.py:song-quick -->\n(.*)<!-- /bench\.py:song-quick -->", text, re.S).group(1)
    assert section in done.stdout
    # Part (a)'s engine ran on the service's malloc: tcmalloc wherever it is installed (scripts/bootstrap.sh does).
    expected = "tcmalloc" if ctypes.util.find_library("tcmalloc_minimal") else "glibc's malloc"
    assert f"in-process (float32, on {expected})" in section or f"in-process (bfloat16, on {expected})" in section
    realign = re.search(r"\| ([\d.]+) \| ([\d.]+) \| (-?[\d.]+) \| (-?[\d.]+) \| (\d+) \| (\d+) \| ([\d.]+) "
                        r"\| ([\d.]+) \| (\d+) \|", section)
    single, realigned, extra, ratio, first_calls, repair_calls, repaired_audio, _, latest = realign.groups()
    assert float(single) > 0 and int(first_calls) >= 1
    assert int(repair_calls) >= 1 and float(repaired_audio) > 0, "the flagged runs are re-aligned"
    assert float(extra) == pytest.approx(float(realigned) - float(single), abs=0.011)
    flagged, lines = map(int, re.search(r"with (\d+) of (\d+) lines flagged", section).groups())
    assert flagged == round(0.25 * lines)
    memory = dict(re.findall(r"^\| (120 s|360 s|360 s / 120 s) \| (.*) \|$", section, re.M))
    assert set(memory) == {"120 s", "360 s", "360 s / 120 s"}
    for key in ("120 s", "360 s"):
        cells = [cell.strip() for cell in memory[key].split("|")]
        assert float(cells[1]) > 0 and float(cells[3]) > 0 and cells[4] == "8"
