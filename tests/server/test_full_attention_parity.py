"""Parity on clips of several encoder windows: with encoder_attention=full the server gives exactly
what stock in-process qwen-asr gives on CPU; the default windowed attention does not (README, server contract).

Clips here are 16-20 s: two or three of the audio encoder's 8 s windows.
"""
from __future__ import annotations

import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

from sow_qwen3_contract.tensors import SAMPLE_RATE
from support.audio import speech
from support.infer import MODEL, answer_of, build_inputs, grpc_client, http_client
from support.reference import expected_lines
from support.stopping import serving

pytestmark = pytest.mark.server  # starts the real tritonserver

ZH = "奇异恩典 何等甘甜\n我罪已得赦免\n前我失丧 今被寻回\n瞎眼今得看见"
EN = "Amazing grace how sweet the sound\nThat saved a wretch like me\nI once was lost but now am found\n" \
     "Was blind but now I see"
CASES = {"chinese-20s": (ZH, "Chinese", 20.0), "english-16s": (EN, "English", 16.0)}


@pytest.fixture(scope="module")
def full_attention_server(tiny_model_dir, server_logs):
    """The real tritonserver on the tiny checkpoint with SOW_QWEN3_ENCODER_ATTENTION=full, single pass."""
    yield from serving(tiny_model_dir, server_logs,
                       {"SOW_QWEN3_ENCODER_ATTENTION": "full", "SOW_QWEN3_REALIGN_PASSES": "0"})


@pytest.fixture(scope="module")
def stock_answers(reference_aligner):
    """Per case: stock qwen-asr's units (text, start, end) and its line times."""
    answers = {}
    for name, (lyrics, language, seconds) in CASES.items():
        audio = speech(seconds)
        items = reference_aligner.align((audio, SAMPLE_RATE), lyrics, language)[0]
        units = [(item.text, round(item.start_time, 3), round(item.end_time, 3)) for item in items]
        answers[name] = (audio, units, expected_lines(reference_aligner, audio, lyrics, language))
    return answers


def server_answer(server, protocol: str, audio, lyrics: str, language: str):
    """(units, (lines, starts, ends)) as the server answers over ``protocol``."""
    module, client = ((grpcclient, grpc_client(server.grpc_url)) if protocol == "grpc"
                      else (httpclient, http_client(server.http_url)))
    try:
        result = client.infer(MODEL, build_inputs(module, audio, lyrics, language))
    finally:
        client.close()
    answer = answer_of(result)
    units = [(unit.text, round(unit.start, 3), round(unit.end, 3)) for unit in answer.units]
    return units, ([line.text for line in answer.lines], [round(line.start, 3) for line in answer.lines],
                   [round(line.end, 3) for line in answer.lines])


def test_stock_answers_are_informative(stock_answers):
    """Guards the parity test against passing trivially: unit times vary and stay inside the clip."""
    for name, (audio, units, (_, starts, ends)) in stock_answers.items():
        times = {t for _, start, end in units for t in (start, end)}
        assert len(times) >= 5, (name, units)
        assert max(ends) < len(audio) / SAMPLE_RATE, name
        assert len(set(starts + ends)) >= 3, (name, starts, ends)


@pytest.mark.parametrize("protocol", ["http", "grpc"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_full_attention_equals_stock_qwen_asr_on_several_windows(full_attention_server, stock_answers, protocol,
                                                                 case):
    lyrics, language, _ = CASES[case]
    audio, units, lines = stock_answers[case]
    assert server_answer(full_attention_server, protocol, audio, lyrics, language) == (units, lines)


@pytest.mark.parametrize("case", sorted(CASES))
def test_windowed_attention_differs_from_stock_on_several_windows(triton_server, stock_answers, case):
    """The default server (windowed) is not stock CPU qwen-asr past one window: the clips tell the two apart."""
    lyrics, language, _ = CASES[case]
    audio, units, lines = stock_answers[case]
    windowed_units, _ = server_answer(triton_server, "http", audio, lyrics, language)
    assert [text for text, _, _ in windowed_units] == [text for text, _, _ in units]
    assert windowed_units != units
