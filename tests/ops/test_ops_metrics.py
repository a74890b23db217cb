"""Prometheus counters move by exactly what known requests should add (scraped before and after).

Measured semantics of Triton 2.51's own counters for this Python-backend model
(see docs/operations-findings.md): a request that the model answers with a
per-request error (HTTP 400) still counts as nv_inference_request_success;
nv_inference_request_failure moves only when a whole execute() fails (e.g. the
stub dies: test_ops_stub_crash). Error rates must come from
sow_qwen3_alignments_total{outcome}.
"""
from __future__ import annotations

import pytest
import tritonclient.grpc as grpcclient
from ops_helpers import ZH, call_grpc, call_http, deltas, new_http_client, scrape, scrape_until, wait_for

from support.audio import noise, speech

pytestmark = pytest.mark.server  # needs the real tritonserver

LABELS = {"model": "qwen3_aligner", "version": "1"}
WANTED = {
    "audio_seconds": ("sow_qwen3_audio_seconds_total", LABELS),
    "lines": ("sow_qwen3_lines_total", LABELS),
    "ok": ("sow_qwen3_alignments_total", {**LABELS, "outcome": "ok"}),
    "bad_input": ("sow_qwen3_alignments_total", {**LABELS, "outcome": "bad_input"}),
    "failed": ("sow_qwen3_alignments_total", {**LABELS, "outcome": "failed"}),
    "triton_success": ("nv_inference_request_success", LABELS),
    "triton_failure": ("nv_inference_request_failure", {**LABELS, "reason": "BACKEND"}),
    "triton_failure_other": ("nv_inference_request_failure", {**LABELS, "reason": "OTHER"}),
    "triton_count": ("nv_inference_count", LABELS),
}


def test_counters_move_by_the_known_requests(triton_server):
    server = triton_server
    samples = scrape(server.metrics_url)
    for _key, (name, labels) in WANTED.items():
        assert any(n == name and set(labels.items()) <= lab for n, lab in samples), f"{name}{labels} not exported"
    before = samples

    http = new_http_client(server.http_url)
    grpc = grpcclient.InferenceServerClient(server.grpc_url)
    try:
        good_1 = call_http(http, speech(4.0), ZH, "Chinese", request_id="ops-metrics-good-1")        # 4.0 s, 4 lines
        good_2 = call_grpc(grpc, noise(2.5, seed=5), "奇异恩典\n\n何等甘甜", request_id="ops-metrics-good-2")  # 2.5 s, 2 lines
        bad = call_http(http, speech(3.0), " \n\n", request_id="ops-metrics-bad-1")  # no lyrics: 400
    finally:
        http.close()
        grpc.close()
    assert (good_1.kind, good_2.kind, bad.kind, bad.status) == ("ok", "ok", "error", "400"), (good_1, good_2, bad)
    assert (len(good_1.lines.text), len(good_2.lines.text)) == (4, 2)

    expected = {
        "audio_seconds": 6.5, "lines": 6, "ok": 2, "bad_input": 1, "failed": 0,
        # Triton: all three were executed and answered, so all three are "successes" to it.
        "triton_success": 3, "triton_failure": 0, "triton_failure_other": 0, "triton_count": 3,
    }
    after = scrape_until(server.metrics_url, lambda s: deltas(before, s, WANTED) == expected)
    assert deltas(before, after, WANTED) == expected

    # One INFO log line per request, with the same figures.
    expected_logs = [
        "request ops-metrics-good-1: outcome=ok audio_s=4.00 lines=4 ms=",
        "request ops-metrics-good-2: outcome=ok audio_s=2.50 lines=2 ms=",
        "request ops-metrics-bad-1: outcome=bad_input audio_s=3.00 lines=0 ms=",
    ]
    wait_for(lambda: all(line in server.log() for line in expected_logs), 10,
             f"log lines {expected_logs} in {server.log_path}")
