"""Requests that share a dynamic batch get exactly what they get alone: on the default CPU server (one forward
pass per request) and with cross-request batching on (SOW_QWEN3_BATCHING=on: the batch's requests share forward
passes; times are identical, confidences within the engine's stated tolerance, tests/core/test_batch_invariance.py).
"""
from __future__ import annotations

import json
import re
import time
import urllib.request
from dataclasses import replace

import numpy as np
import pytest
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from sow_qwen3_contract.tensors import SAMPLE_RATE
from support.audio import noise, speech
from support.batch_invariance import CONFIDENCE_TOLERANCE
from support.infer import MODEL, align_http, answer_of, build_inputs, http_client, outcomes_of
from support.stopping import serving

pytestmark = pytest.mark.server  # needs the real tritonserver


@pytest.fixture(scope="module")
def batching_server(tiny_model_dir, server_logs):
    """The real tritonserver on the tiny checkpoint with cross-request batching on (on CPU it is off by default),
    in float32: the dtype support.batch_invariance's tolerance is stated for (auto may choose bfloat16)."""
    yield from serving(tiny_model_dir, server_logs, {"SOW_QWEN3_BATCHING": "on", "SOW_QWEN3_DTYPE": "float32"})


@pytest.fixture(params=["triton_server", "batching_server"])
def server(request):
    return request.getfixturevalue(request.param)


def without_confidences(answer):
    """``answer`` with its confidences set aside: (the rest, line confidences, unit confidences)."""
    lines = tuple(replace(line, confidence=None) for line in answer.lines)
    units = tuple(replace(unit, confidence=None) for unit in answer.units or ())
    return (replace(answer, lines=lines, units=units), [line.confidence for line in answer.lines],
            [unit.confidence for unit in answer.units or ()])


def assert_as_alone(together, alone) -> None:
    rest, line_confidence, unit_confidence = without_confidences(together)
    alone_rest, alone_line_confidence, alone_unit_confidence = without_confidences(alone)
    assert rest == alone_rest
    assert line_confidence == pytest.approx(alone_line_confidence, abs=CONFIDENCE_TOLERANCE)
    assert unit_confidence == pytest.approx(alone_unit_confidence, abs=CONFIDENCE_TOLERANCE)

TEXTS = [
    "奇异恩典 何等甘甜\n我罪已得赦免",
    "Amazing grace\nhow sweet the sound",
    "主啊 Lord\n\n，，\n你是我的力量",
    "如鹿切慕溪水\n我的心切慕你\n你是我的力量\n你是我的盾牌",
]
REQUESTS = [
    (speech(2.0 + 0.7 * i) if i % 2 else noise(2.5 + 0.6 * i, seed=i), TEXTS[i % len(TEXTS)]) for i in range(10)
]
BLOCKER = (noise(120.0, seed=99), "哈利路亚 " * 200)  # keeps the instance busy while the others queue


# How long Triton may take to count an execution after its responses have reached the client.
STATS_TIMEOUT_S = 30


def execution_counts(url: str) -> tuple[int, int]:
    """(requests inferred, execute() calls) so far, from Triton's statistics."""
    with urllib.request.urlopen(f"http://{url}/v2/models/{MODEL}/stats") as response:
        stats = json.load(response)["model_stats"][0]
    return stats["inference_count"], stats["execution_count"]


def send_together(url: str, requests: list) -> tuple[list, int]:
    """Send the blocker, then ``requests`` at once: each result or exception, in order, and the requests
    inferred less the execute() calls that ran them (blocker included): above 0 when some shared a call.

    Triton counts an execution after its responses are sent, so a client can hold every answer before the
    statistics show them: they are read once they count every request sent (within STATS_TIMEOUT_S). For the
    same reason the first reading may miss the last request answered before (a test's requests sent alone):
    counted late, it adds one request and one execution, which leaves the difference unchanged, so at least
    every request sent must be counted, not exactly those.
    """
    inferred, executed = execution_counts(url)
    client = http_client(url, concurrency=len(requests) + 1)
    try:
        blocker = client.async_infer(MODEL, build_inputs(httpclient, *BLOCKER))
        pending = [client.async_infer(MODEL, build_inputs(httpclient, audio, lyrics)) for audio, lyrics in requests]
        outcomes = outcomes_of(pending, answer_of)
        blocker.get_result()
    finally:
        client.close()
    deadline = time.monotonic() + STATS_TIMEOUT_S
    inferred_after, executed_after = execution_counts(url)
    while inferred_after - inferred < len(requests) + 1 and time.monotonic() < deadline:
        time.sleep(0.05)  # polling interval until Triton has counted the last execution
        inferred_after, executed_after = execution_counts(url)
    counted = inferred_after - inferred
    assert counted >= len(requests) + 1, f"Triton's statistics count {counted} of {len(requests) + 1} requests sent"
    return outcomes, counted - (executed_after - executed)


def test_batched_results_equal_one_at_a_time(server, request):
    url = server.http_url
    alone = [align_http(url, audio, lyrics) for audio, lyrics in REQUESTS]
    together, shared_batches = send_together(url, REQUESTS)
    assert shared_batches > 0, "no two requests shared a batch"
    for outcome, expected in zip(together, alone, strict=True):
        assert_as_alone(outcome, expected)
    shared = [int(n) for n in re.findall(r"batched forward pass: (\d+) spans", server.log())]
    if request.node.callspec.params["server"] == "batching_server":
        assert shared and max(shared) >= 2, "no forward pass was shared"
    else:
        assert shared == [], "the CPU default shares forward passes"


def test_bad_requests_in_a_batch_leave_the_others_intact(server):
    url = server.http_url
    bad = [
        (np.zeros(0, np.float32), TEXTS[0]),
        (speech(2.0), "。。。"),
        (np.full(SAMPLE_RATE, np.inf, np.float32), TEXTS[1]),
    ]
    mixed = [REQUESTS[0], bad[0], REQUESTS[1], bad[1], REQUESTS[2], bad[2], REQUESTS[3]]
    alone = {i: align_http(url, *mixed[i]) for i in (0, 2, 4, 6)}
    together, shared_batches = send_together(url, mixed)
    assert shared_batches > 0, "no two requests shared a batch"
    for index, outcome in enumerate(together):
        if index in alone:
            assert_as_alone(outcome, alone[index])
        else:
            assert isinstance(outcome, InferenceServerException) and outcome.status() == "400", outcome


def test_a_bad_repeat_count_in_a_batch_leaves_the_others_intact(server):
    url = server.http_url
    notated = (REQUESTS[4][0], "[Chorus]\n" + TEXTS[0] + "\n\n[Verse]\n如鹿切慕溪水 (x2)\n\n[Chorus]")
    absurd = (REQUESTS[5][0], "奇异恩典 ×1000")
    mixed = [REQUESTS[0], absurd, notated, absurd, REQUESTS[3]]
    alone = {i: align_http(url, *mixed[i]) for i in (0, 2, 4)}
    together, shared_batches = send_together(url, mixed)
    assert shared_batches > 0, "no two requests shared a batch"
    assert len(alone[2].lines) == 6, alone[2].lines  # the chorus twice, the verse line twice
    for index, outcome in enumerate(together):
        if index in alone:
            assert_as_alone(outcome, alone[index])
        else:
            assert isinstance(outcome, InferenceServerException) and outcome.status() == "400", outcome
            assert "asks for 1000 repeats" in outcome.message()
