"""What Triton 2.51 answers while serve.py's supervisor reloads a crashed model is retryable (exit 5).

The messages and statuses are the ones the real server gave (recorded in
docs/operations-findings.md, "Worker (stub) crash"); tests/ops/test_ops_stub_crash.py
sends real requests through the client during a real recovery. Here each one
is pinned, so a change to the classifier cannot turn any of them into a
permanent failure.
"""
from __future__ import annotations

import pytest
from tritonclient.utils import InferenceServerException

from sow_qwen3 import ServerUnavailableError
from sow_qwen3.client import classify

STUB_DEAD = "Stub process 'qwen3_aligner_0_0' is not healthy."
UNLOADED = "Request for unknown model: 'qwen3_aligner' has no available versions"


@pytest.mark.parametrize("status, message", [
    ("500", STUB_DEAD),                       # HTTP, a request the dead stub held or got before the unload
    ("StatusCode.INTERNAL", STUB_DEAD),       # the same over gRPC
    ("404", UNLOADED),                        # HTTP, between the unload and the end of the load
    ("StatusCode.NOT_FOUND", UNLOADED),       # the same over gRPC
])
def test_answers_during_a_model_reload_are_retryable(status, message):
    error = classify(InferenceServerException(msg=message, status=status))
    assert isinstance(error, ServerUnavailableError), error
    assert message in str(error)
