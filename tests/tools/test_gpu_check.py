"""scripts/gpu_check.py as the suite runs it: on CPU with small sizes (--device cpu --quick), the real engine and
stock qwen-asr on the tiny informative checkpoint, its report read back."""
from __future__ import annotations

import re
import subprocess
import sys

import pytest

from support.audio import REPO
from support.batch_invariance import CONFIDENCE_TOLERANCE

pytestmark = pytest.mark.server  # step 6 starts the real tritonserver


def test_the_quick_check_on_cpu_reports_parity_invariance_and_speed(tmp_path):
    report_path = tmp_path / "report.md"
    done = subprocess.run([sys.executable, str(REPO / "scripts" / "gpu_check.py"), "--device", "cpu", "--quick",
                           "--output", str(report_path)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    report = report_path.read_text(encoding="utf-8")
    assert report.strip() in done.stdout
    assert "tiny informative random-weight checkpoint" in report and "dtype float32" in report
    # Parity with stock on both clips, and the stock times vary (so identical means something).
    parity = re.findall(r"^\| (\d+) s \| (\d+) \| (\d+)/(\d+) \(([\d.]+) %\) \| (\d+) \|", report, re.M)
    assert [row[0] for row in parity] == ["8", "20"]
    for _, units, identical, total, share, distinct in parity:
        assert int(total) == 2 * int(units) and identical == total and share == "100.0" and int(distinct) >= 3
    invariance = re.search(r"(\d+) calls of mixed lengths in one batched pass against each alone: (\d+)/(\d+) unit "
                           r"times identical \(100\.0 %\), confidences within ([\d.e-]+)\.", report)
    assert invariance and int(invariance.group(1)) == 4 and invariance.group(2) == invariance.group(3)
    assert float(invariance.group(4)) <= CONFIDENCE_TOLERANCE
    speeds = re.findall(r"^\| (service engine|stock qwen-asr), batched \| (\d+) \| ([\d.]+) \| ([\d.]+) \|", report, re.M)
    assert [(what, int(batch)) for what, batch, _, _ in speeds] == [
        ("service engine", 1), ("service engine", 2), ("stock qwen-asr", 1), ("stock qwen-asr", 2)]
    assert all(float(seconds) > 0 and float(rate) > 0 for _, _, seconds, rate in speeds)
    assert re.search(r"matrix product rate of this device in it: [\d.]+ TFLOP/s", report)
    # Step 6 through the real tritonserver with batching on: both levels answered, and at concurrency 4 some
    # execute() calls held more than one request.
    assert "scripts/serve.py with a CPU instance with SOW_QWEN3_BATCHING=on, dtype float32; exit status 0" in report
    served = re.findall(r"^\| (\d+) \| ([\d.]+) \| (\d+) \| ([\d.]+) \|$", report, re.M)
    assert [int(row[0]) for row in served] == [1, 4]
    assert all(float(rate) > 0 for _, rate, _, _ in served)
    assert float(served[0][3]) == 1.0 and float(served[1][3]) > 1.0
