"""Bad requests get HTTP 400 / INVALID_ARGUMENT with a plain message, and harm nobody else."""
from __future__ import annotations

import re

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from sow_qwen3_contract.tensors import SAMPLE_RATE
from support.audio import noise, speech
from support.infer import MODEL, answer_of, build_inputs, grpc_client, http_client, texts

pytestmark = pytest.mark.server  # needs the real tritonserver

GOOD = "奇异恩典 何等甘甜\n我罪已得赦免"


def refusal(module, client, audio, lyrics, language=None, audio_shape=None) -> InferenceServerException:
    with pytest.raises(InferenceServerException) as error:
        client.infer(MODEL, build_inputs(module, audio, lyrics, language, audio_shape))
    return error.value


BAD_REQUESTS = {
    "too-long": (lambda: np.zeros(300 * SAMPLE_RATE + SAMPLE_RATE, np.float32), GOOD, None,
                 r"audio is 301\.00 s long; the limit is 300 s"),
    "empty-audio": (lambda: np.zeros(0, np.float32), GOOD, None, "AUDIO is empty"),
    "nan-audio": (lambda: np.array([0.1, np.nan, 0.2] * 1000, np.float32), GOOD, None,
                  "AUDIO has 1000 non-finite samples"),
    "empty-lyrics": (lambda: speech(3.0), "", None, "LYRICS is empty"),
    "blank-lyrics": (lambda: speech(3.0), " \n\t\n", None, "LYRICS is empty"),
    "nothing-alignable": (lambda: speech(3.0), "。。。\n！？\n——", None,
                          "lyrics contain nothing alignable"),
    "bad-utf8": (lambda: speech(3.0), b"\xe4\xb8\xbb\xff\xfe", None,
                 "LYRICS is not valid UTF-8: byte 0xff at offset 3"),
    "bad-language": (lambda: speech(3.0), GOOD, "Klingon", "unsupported language 'Klingon'"),
    "too-many-units": (lambda: speech(3.0), "la " * 2501, None,
                       "lyrics have 2501 alignable units .*; the model can place at most 2500"),
}


@pytest.mark.parametrize("case", sorted(BAD_REQUESTS))
def test_bad_request_is_400_with_its_message_over_http(triton_server, case):
    make_audio, lyrics, language, message = BAD_REQUESTS[case]
    client = http_client(triton_server.http_url)
    error = refusal(httpclient, client, make_audio(), lyrics, language)
    client.close()
    assert error.status() == "400"
    assert re.search(message, error.message()), error.message()
    assert "Traceback" not in error.message()


@pytest.mark.parametrize("case", ["too-long", "bad-language", "nothing-alignable"])
def test_bad_request_is_invalid_argument_over_grpc(triton_server, case):
    make_audio, lyrics, language, message = BAD_REQUESTS[case]
    client = grpc_client(triton_server.grpc_url)
    error = refusal(grpcclient, client, make_audio(), lyrics, language)
    client.close()
    assert error.status() == "StatusCode.INVALID_ARGUMENT"
    assert re.search(message, error.message()), error.message()


def test_batch_of_two_clips_in_one_request_is_refused(triton_server):
    client = http_client(triton_server.http_url)
    audio = np.zeros((2, SAMPLE_RATE), np.float32)
    inputs = build_inputs(httpclient, audio, GOOD, audio_shape=(2, -1))
    lyrics = np.array([[GOOD.encode()], [GOOD.encode()]], dtype=np.object_)
    inputs[1] = httpclient.InferInput("LYRICS", [2, 1], "BYTES")
    inputs[1].set_data_from_numpy(lyrics)
    with pytest.raises(InferenceServerException) as error:
        client.infer(MODEL, inputs)
    client.close()
    assert error.value.status() == "400"
    assert "AUDIO must have shape [1, samples]" in error.value.message() and f"[2, {SAMPLE_RATE}]" in error.value.message()


def test_wrong_rank_is_refused(triton_server):
    client = http_client(triton_server.http_url)
    error = refusal(httpclient, client, np.zeros(3200, np.float32), GOOD, audio_shape=(1, 2, 1600))
    client.close()
    assert error.status() == "400"
    assert "AUDIO" in error.message() and "shape" in error.message()


def test_server_still_serves_after_bad_requests(triton_server):
    client = http_client(triton_server.http_url)
    result = client.infer(MODEL, build_inputs(httpclient, noise(3.0, seed=5), GOOD))
    client.close()
    assert texts(answer_of(result)) == GOOD.splitlines()
    assert triton_server.is_ready()
