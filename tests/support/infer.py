"""Calling the qwen3_aligner contract with tritonclient, over HTTP or gRPC."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

MODEL = "qwen3_aligner"
API_KEY = "client-test-key-93c2"  # the key the keyed_server fixture (tests/client) requires


@dataclass(frozen=True)
class Lines:
    """The line outputs of one response."""

    text: list[str]
    start: list[float]
    end: list[float]


def build_inputs(module, audio: np.ndarray, lyrics: str | bytes, language: str | None = None, audio_shape=None):
    """The request tensors for ``module`` (tritonclient.http or .grpc)."""
    audio = np.asarray(audio, dtype=np.float32)
    audio = audio.reshape(audio_shape or (1, -1))
    raw = lyrics if isinstance(lyrics, bytes) else lyrics.encode("utf-8")
    tensors = [("AUDIO", audio, "FP32"), ("LYRICS", np.array([[raw]], dtype=np.object_), "BYTES")]
    if language is not None:
        tensors.append(("LANGUAGE", np.array([[language.encode("utf-8")]], dtype=np.object_), "BYTES"))
    inputs = []
    for name, data, datatype in tensors:
        tensor = module.InferInput(name, list(data.shape), datatype)
        tensor.set_data_from_numpy(data)
        inputs.append(tensor)
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
