"""Lyrics as people write them, through the real tritonserver on the tiny checkpoint.

Section markers are not sung and repeat notation is sung out before alignment:
the server answers exactly what it answers for the same lyrics written out line
by line, and lists the lines it did not sing in SKIPPED_TEXT / SKIPPED_LINE.
"""
from __future__ import annotations

import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from support.audio import noise
from support.infer import MODEL, Lines, answer_of, build_inputs, grpc_client, http_client

pytestmark = pytest.mark.server

NOTATED = """\
[Verse 1]
主啊 (x2)

副歌
我爱你
哈利路亚

(Bridge)
阿们
×2

[副歌]
"""
CHORUS = ["我爱你", "哈利路亚"]
SUNG = ["主啊"] * 2 + CHORUS + ["阿们"] * 2 + CHORUS
SKIPPED = [(0, "[Verse 1]"), (3, "副歌"), (7, "(Bridge)"), (9, "×2"), (11, "[副歌]")]


def infer(module, client, audio, lyrics):
    """The lines and the skipped lines (index, text) of one request."""
    result = client.infer(MODEL, build_inputs(module, audio, lyrics))
    texts, indexes = result.as_numpy("SKIPPED_TEXT"), result.as_numpy("SKIPPED_LINE")
    assert texts.shape == indexes.shape and texts.shape[0] == 1, (texts.shape, indexes.shape)  # [1, n] on the wire
    answer = answer_of(result)
    return Lines.of(answer), [(item.index, item.text) for item in answer.skipped]


@pytest.fixture(scope="module")
def audio():
    return noise(6.0, seed=3)  # on this clip the tiny model's starts for SUNG vary


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_notation_is_sung_out_and_aligned_like_the_lyrics_written_out(triton_server, audio, protocol):
    module, client = ((grpcclient, grpc_client(triton_server.grpc_url)) if protocol == "grpc"
                      else (httpclient, http_client(triton_server.http_url)))
    try:
        notated, skipped = infer(module, client, audio, NOTATED)
        written_out, none_skipped = infer(module, client, audio, "\n".join(SUNG))
    finally:
        client.close()
    assert len(set(written_out.start)) >= 3, "the tiny model's starts must vary for this test to mean anything"
    assert notated.text == SUNG
    assert notated == written_out
    assert skipped == SKIPPED
    assert none_skipped == []


def test_lyrics_of_markers_only_are_refused(triton_server, audio):
    client = http_client(triton_server.http_url)
    try:
        with pytest.raises(InferenceServerException) as error:
            client.infer(MODEL, build_inputs(httpclient, audio, "[Chorus]\n(x2)\n"))
    finally:
        client.close()
    assert error.value.status() == "400"
    assert "no line to sing" in error.value.message()


@pytest.mark.parametrize("lyrics, message", [
    ("奇异恩典 ×1000", r"LYRICS line 1 .* asks for 1000 repeats; .* 1 to 20 times"),
    ("奇异恩典\n\n[Chorus]\n我罪已得赦免\n\n[Chorus x0]", r"LYRICS line 6 .* asks for 0 repeats"),
])
def test_an_absurd_count_is_invalid_arg_with_its_line(triton_server, audio, lyrics, message):
    client = grpc_client(triton_server.grpc_url)
    try:
        with pytest.raises(InferenceServerException, match=message) as error:
            client.infer(MODEL, build_inputs(grpcclient, audio, lyrics))
    finally:
        client.close()
    assert error.value.status() == "StatusCode.INVALID_ARGUMENT"
