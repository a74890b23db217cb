"""perf_analyzer 2.51 runs against our server with input data from scripts/perf_input.py.

A smoke test of the load-testing path (scripts/perf_input.py + scripts/perf_analyzer.sh)
on the tiny checkpoint: a few requests per protocol, and a throughput above zero
in perf_analyzer's CSV. It times nothing against a limit.
"""
from __future__ import annotations

import csv
import json
import subprocess
from pathlib import Path

import pytest

from sow_qwen3_contract.tensors import SAMPLE_RATE
from sow_qwen3_tools import perf_input

REPO = Path(__file__).resolve().parents[2]
WRAPPER = REPO / "scripts" / "perf_analyzer.sh"
ASSETS = REPO / "assets"
NO_BINARY = 3  # perf_analyzer.sh's status when no usable perf_analyzer is installed

pytestmark = pytest.mark.server


@pytest.fixture(scope="module")
def input_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("perf") / "data.json"
    status = perf_input.main([str(ASSETS / "amazing_grace_zh.ogg"), str(ASSETS / "amazing_grace_zh.txt"),
                              "--language", "Chinese", "-o", str(path)])
    assert status == 0
    return path


@pytest.fixture(scope="module")
def perf_analyzer() -> Path:
    """The wrapper; skips (with the wrapper's reason) only where no usable perf_analyzer is installed.

    Once the wrapper has found the binary and its libraries, a binary that does
    not start is a failure, not a skip.
    """
    probe = subprocess.run([str(WRAPPER), "--version"], capture_output=True, text=True, timeout=60)
    if probe.returncode == NO_BINARY:
        pytest.skip(f"no usable perf_analyzer: {probe.stderr.strip()}")
    assert probe.returncode == 0 and "Version 2.51" in probe.stdout + probe.stderr, probe.stdout + probe.stderr
    return WRAPPER


def test_input_data_matches_the_contract(input_data: Path) -> None:
    entry = json.loads(input_data.read_text())["data"][0]
    audio = entry["AUDIO"]
    assert audio["shape"] == [len(audio["content"])]  # no batch dimension: perf_analyzer adds it
    assert 4 * SAMPLE_RATE < len(audio["content"]) < 60 * SAMPLE_RATE  # the asset: about 21 s at 16 kHz
    assert all(-1.0 <= x <= 1.0 for x in audio["content"][:SAMPLE_RATE])
    assert entry["LYRICS"]["content"] == [(ASSETS / "amazing_grace_zh.txt").read_text(encoding="utf-8")]
    assert entry["LANGUAGE"] == {"content": ["Chinese"], "shape": [1]}


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_perf_analyzer_reports_throughput(perf_analyzer: Path, triton_server, input_data: Path,
                                          tmp_path: Path, protocol: str) -> None:
    report = tmp_path / "report.csv"
    url = triton_server.http_url if protocol == "http" else triton_server.grpc_url
    run = subprocess.run(
        [str(perf_analyzer), "-m", "qwen3_aligner", "-i", protocol, "-u", url, "--input-data", str(input_data),
         # A fixed request count needs no stable measurement windows (one concurrency level per run).
         "--concurrency-range", "2", "--request-count", "8", "-f", str(report)],
        capture_output=True, text=True, timeout=120,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    rows = list(csv.DictReader(report.open()))
    assert [row["Concurrency"] for row in rows] == ["2"], rows
    assert float(rows[0]["Inferences/Second"]) > 0, rows
