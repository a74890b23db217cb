"""How the client names a failed call: by its status first, the server's message kept as it is.

The cases are tritonclient's own InferenceServerException, built with the
statuses and messages Triton 2.51 sends (seen on the real server: 403 and
gRPC UNAVAILABLE "This protocol is restricted" without the API key, 404 and
NOT_FOUND for a model that is not loaded). The real-server side of this is in
test_client_end_to_end.py and test_client_cli.py.
"""
from __future__ import annotations

import pytest
from tritonclient.utils import InferenceServerException

from sow_qwen3 import AuthError, BadInputError, ServerError, ServerUnavailableError
from sow_qwen3.client import classify

CASES = [
    # status first: the message's words do not change what the status says
    ("500", "alignment failed: RuntimeError: model not ready", ServerError),
    ("StatusCode.INTERNAL", "alignment failed: queue unavailable", ServerError),
    ("400", "unsupported language 'not ready'; supported: ...", BadInputError),
    ("400", "unsupported language 'api-key restricted'; supported: ...", BadInputError),
    ("StatusCode.INVALID_ARGUMENT", "unsupported language 'unavailable'", BadInputError),
    ("403", "This API is restricted, expecting header 'api-key'", AuthError),
    ("401", "unauthorized", AuthError),
    ("StatusCode.PERMISSION_DENIED", "denied", AuthError),
    ("StatusCode.UNAVAILABLE", "This protocol is restricted, expecting header 'triton-grpc-protocol-api-key'",
     AuthError),
    ("StatusCode.UNAVAILABLE", "failed to connect to all addresses", ServerUnavailableError),
    ("503", "Exceeds maximum queue size", ServerUnavailableError),
    ("502", "Bad Gateway", ServerUnavailableError),
    ("404", "Request for unknown model: 'qwen3_aligner' has no available versions", ServerUnavailableError),
    ("StatusCode.NOT_FOUND", "Request for unknown model", ServerUnavailableError),
    ("StatusCode.DEADLINE_EXCEEDED", "Deadline Exceeded", ServerUnavailableError),
    (None, "timed out", ServerUnavailableError),
]


@pytest.mark.parametrize("status, message, kind", CASES)
def test_the_status_decides_and_the_message_is_kept(status, message, kind):
    error = classify(InferenceServerException(message, status=status))
    assert type(error) is kind
    assert str(error).endswith(message)


def test_an_unknown_status_is_a_server_failure_naming_it():
    error = classify(InferenceServerException("I'm a teapot", status="418"))
    assert type(error) is ServerError and str(error) == "the server answered 418: I'm a teapot"


def test_no_answer_at_all_is_unavailable():
    error = classify(ConnectionRefusedError(111, "Connection refused"))
    assert type(error) is ServerUnavailableError and "Connection refused" in str(error)
