"""Calling the qwen3_aligner contract with tritonclient, over HTTP or gRPC."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

from sow_qwen3.client import infer_input, request_inputs

MODEL = "qwen3_aligner"
API_KEY = "client-test-key-93c2"  # the key the keyed_server fixture (tests/client) requires


@dataclass(frozen=True)
class Lines:
    """The line outputs of one response."""

    text: list[str]
    start: list[float]
    end: list[float]


def build_inputs(module, audio: np.ndarray, lyrics: str | bytes, language: str | None = None, audio_shape=None):
    """The client's request tensors; AUDIO reshaped to ``audio_shape`` for tests that send a wrong shape."""
    inputs = request_inputs(module, audio, lyrics, language)
    if audio_shape is not None:
        inputs[0] = infer_input(module, "AUDIO", np.asarray(audio, dtype=np.float32).reshape(audio_shape), "FP32")
    return inputs


def lines_of(result) -> Lines:
    """LINE_TEXT / LINE_START / LINE_END of an InferResult, batch dimension removed."""
    return Lines(
        text=[item.decode("utf-8") for item in result.as_numpy("LINE_TEXT")[0]],
        start=[float(x) for x in result.as_numpy("LINE_START")[0]],
        end=[float(x) for x in result.as_numpy("LINE_END")[0]],
    )


def http_client(url: str, concurrency: int = 1) -> httpclient.InferenceServerClient:
    return httpclient.InferenceServerClient(url, concurrency=concurrency, network_timeout=300.0)


def grpc_client(url: str) -> grpcclient.InferenceServerClient:
    return grpcclient.InferenceServerClient(url)


def align_http(url: str, audio, lyrics, language=None, headers=None) -> Lines:
    client = http_client(url)
    try:
        return lines_of(client.infer(MODEL, build_inputs(httpclient, audio, lyrics, language), headers=headers))
    finally:
        client.close()


def align_grpc(url: str, audio, lyrics, language=None, headers=None) -> Lines:
    client = grpc_client(url)
    try:
        return lines_of(client.infer(MODEL, build_inputs(grpcclient, audio, lyrics, language), headers=headers))
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
