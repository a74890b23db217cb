"""scripts/bench_container.py end to end on the tiny checkpoint: the built image under compose's limits, a short song.

The real-size 900 s run is the lead's, on a quiet machine (docs/benchmarks.md);
this one proves the script builds, serves, measures and reports.
"""
from __future__ import annotations

import re
import subprocess
import sys

import pytest
from deploy_files import REPO

from sow_qwen3_tools.docker_stack import engine_problem
from sow_qwen3_tools.songs import Song, song_lyrics

pytestmark = [pytest.mark.docker, pytest.mark.server]  # runs tritonserver (in the image)


def test_a_short_song_in_the_container_is_measured_and_reported(readable_checkpoint, tmp_path):
    problem = engine_problem()
    if problem:
        pytest.skip(f"{problem}: the image tests need a Docker engine (.ci/run starts one)")
    report = tmp_path / "benchmarks.md"
    report.write_text("# Benchmarks\n\nhand-written notes\n")
    done = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "bench_container.py"), "--seconds", "30", "--model-dir",
         str(readable_checkpoint), "--memory", "3g", "--cpus", "1", "--output", str(report)],
        capture_output=True, text=True, timeout=1800, cwd=REPO)
    assert done.returncode == 0, done.stderr[-4000:] + done.stdout[-2000:]
    text = report.read_text()
    assert text.startswith("# Benchmarks\n\nhand-written notes\n")
    section = re.search(r"<!-- bench\.py:container -->\n(.*)<!-- /bench\.py:container -->", text, re.S).group(1)
    assert section in done.stdout
    lines = int(re.search(r"The 30 s song \((\d+) lines\)", section).group(1))
    assert lines == len(song_lyrics(Song(30, 50)).splitlines())
    assert re.search(r"the model's choice: `dtype \w+ \(", section)
    row = re.search(r"^\| ([\d.]+) \| ([\d.]+) \| ([\d.]+) \| ([\d.]+) \| ([\d.]+) \| ([\d.]+) \| (yes|no) \| (\d+) \|$",
                    section, re.M)
    seconds, limit, load_peak, peak, resident, _, oom, restarts = row.groups()
    assert float(seconds) > 0
    assert float(limit) == pytest.approx(3 * 2**30 / 1e9, abs=0.01), "the limit asked for is the one measured"
    assert 0 < float(load_peak) <= float(peak) <= float(limit) and 0 < float(resident) <= float(peak)
    assert (oom, restarts) == ("no", "0")
    assert re.search(r"triton_python_b[^,]* \d+\.\d\d", section), "the model's stub is among the processes"
