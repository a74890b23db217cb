"""Calling the qwen3_aligner contract with tritonclient, over HTTP or gRPC, and reading its answers.

Every test that reads a qwen3_aligner answer reads it through the contract's
one decoder (``sow_qwen3_contract.response.decode_alignment``), by
``answer_of``; only tests/e2e/test_end_to_end.py reads raw tensors, to check
the client's own decoding against them.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

from sow_qwen3.client import infer_input, request_inputs, response_columns
from sow_qwen3_contract.response import AlignmentResponse, decode_alignment
from sow_qwen3_contract.tensors import ALIGNER_MODEL, ALIGNER_OUTPUTS

MODEL = ALIGNER_MODEL
API_KEY = "client-test-key-93c2"  # the key the keyed_server fixture (tests/client) requires


@dataclass(frozen=True)
class Lines:
    """The line texts and times of one answer, as plain lists (what tests/ops compares between answers)."""

    text: list[str]
    start: list[float]
    end: list[float]

    @classmethod
    def of(cls, answer: AlignmentResponse) -> Lines:
        """The texts, starts and ends of ``answer``'s lines."""
        return cls([line.text for line in answer.lines], [line.start for line in answer.lines],
                   [line.end for line in answer.lines])


def build_inputs(module, audio: np.ndarray, lyrics: str | bytes, language: str | None = None, audio_shape=None):
    """The client's request tensors; AUDIO reshaped to ``audio_shape`` for tests that send a wrong shape."""
    inputs = request_inputs(module, audio, lyrics, language)
    if audio_shape is not None:
        inputs[0] = infer_input(module, "AUDIO", np.asarray(audio, dtype=np.float32).reshape(audio_shape), "FP32")
    return inputs


def answer_of(result, outputs: Sequence[str] | None = None) -> AlignmentResponse:
    """The decoded answer in a tritonclient InferResult: the outputs ``outputs``, or (None) every contract output
    (``ALIGNER_OUTPUTS``) that ``result`` carries. KeyError names a missing line output."""
    names = [name for name in ALIGNER_OUTPUTS if result.as_numpy(name) is not None] if outputs is None else outputs
    return decode_alignment(response_columns(result, names))


def lines_of(result) -> Lines:
    """The line texts and times of an InferResult, decoded by ``answer_of``."""
    return Lines.of(answer_of(result))


def texts(answer: AlignmentResponse) -> list[str]:
    """The texts of ``answer``'s lines."""
    return [line.text for line in answer.lines]


def starts(answer: AlignmentResponse) -> list[float]:
    """The start times of ``answer``'s lines."""
    return [line.start for line in answer.lines]


def ends(answer: AlignmentResponse) -> list[float]:
    """The end times of ``answer``'s lines."""
    return [line.end for line in answer.lines]


def http_client(url: str, concurrency: int = 1) -> httpclient.InferenceServerClient:
    return httpclient.InferenceServerClient(url, concurrency=concurrency, network_timeout=300.0)


def grpc_client(url: str) -> grpcclient.InferenceServerClient:
    return grpcclient.InferenceServerClient(url)


def align_http(url: str, audio, lyrics, language=None, headers=None) -> AlignmentResponse:
    """One request over HTTP on a fresh connection, decoded."""
    client = http_client(url)
    try:
        return answer_of(client.infer(MODEL, build_inputs(httpclient, audio, lyrics, language), headers=headers))
    finally:
        client.close()


def align_grpc(url: str, audio, lyrics, language=None, headers=None) -> AlignmentResponse:
    """One request over gRPC on a fresh connection, decoded."""
    client = grpc_client(url)
    try:
        return answer_of(client.infer(MODEL, build_inputs(grpcclient, audio, lyrics, language), headers=headers))
    finally:
        client.close()


def outcomes_of(pending: list, convert) -> list:
    """``convert(result)`` of each async request in ``pending``, or the InferenceServerException it raised, in order."""
    from tritonclient.utils import InferenceServerException

    outcomes = []
    for future in pending:
        try:
            outcomes.append(convert(future.get_result()))
        except InferenceServerException as exc:
            outcomes.append(exc)
    return outcomes
