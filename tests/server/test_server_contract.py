"""The qwen3_aligner contract against the real tritonserver and the tiny checkpoint."""
from __future__ import annotations

import json
import urllib.request

import psutil
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

from sow_qwen3_contract.tensors import SAMPLE_RATE
from support.audio import noise, speech
from support.infer import MODEL, align_grpc, align_http, answer_of, build_inputs, ends, grpc_client, http_client, starts, texts
from support.reference import expected_lines

pytestmark = pytest.mark.server  # needs the real tritonserver

ZH = "奇异恩典 何等甘甜\n我罪已得赦免\n前我失丧 今被寻回\n瞎眼今得看见"
EN = "Amazing grace how sweet the sound\nThat saved a wretch like me\nI once was lost but now am found"
MIXED = "\n主啊 Lord，\n\n……！！\n你是我的力量 my strength\n  \n——\nHallelujah 哈利路亚\n"
PUNCT_FIRST = "。。。\n奇异恩典\n\n！\n何等甘甜"
CASES = {
    "chinese-speech": (ZH, "Chinese", lambda: speech(6.0)),
    "chinese-noise": (ZH, "zh", lambda: noise(5.0, seed=1)),
    "english": (EN, "English", lambda: speech(5.5)),
    "mixed-blank-punctuation": (MIXED, None, lambda: noise(4.5, seed=2)),
    "punctuation-first": (PUNCT_FIRST, "ZH-cn", lambda: speech(4.0)),
}


def rounded(values):
    return [round(v, 3) for v in values]


@pytest.fixture(scope="module")
def expectations(reference_aligner):
    table = {}
    for name, (lyrics, language, make_audio) in CASES.items():
        audio = make_audio()
        table[name] = (audio, lyrics, language, expected_lines(reference_aligner, audio, lyrics, language or "Chinese"))
    return table


def test_server_is_ready_and_reports_the_model(triton_server):
    assert triton_server.is_ready()
    with urllib.request.urlopen(f"http://{triton_server.http_url}/v2/models/{MODEL}/config") as response:
        config = json.load(response)
    assert config["max_batch_size"] >= 1 and "dynamic_batching" in config
    assert config["dynamic_batching"]["default_queue_policy"]["max_queue_size"] >= 16
    assert {i["name"]: i["data_type"] for i in config["input"]} == {
        "AUDIO": "TYPE_FP32", "LYRICS": "TYPE_STRING", "LANGUAGE": "TYPE_STRING"}


def test_expectations_are_informative(expectations):
    """Guards the parity test against passing trivially: times vary and fall inside the clips."""
    for name, (audio, _, _, (_, _starts, line_ends)) in expectations.items():
        duration = len(audio) / SAMPLE_RATE
        assert max(line_ends) < duration, f"{name}: times clamp to the clip end, the test would be empty"
    _, zh_starts, _ = expectations["chinese-speech"][3]
    assert len(set(zh_starts)) >= 3, zh_starts
    assert expectations["chinese-speech"][3] != expectations["chinese-noise"][3], "audio makes no difference"


@pytest.mark.parametrize("protocol", ["http", "grpc"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_parity_with_in_process_qwen_asr(single_pass_server, expectations, protocol, case):
    """The single pass is stock qwen-asr; re-alignment only moves flagged lines (tests/test_server_realign.py)."""
    audio, lyrics, language, (lines, expected_starts, expected_ends) = expectations[case]
    align = align_http if protocol == "http" else align_grpc
    url = single_pass_server.http_url if protocol == "http" else single_pass_server.grpc_url
    result = align(url, audio, lyrics, language)
    assert texts(result) == lines
    assert rounded(starts(result)) == expected_starts
    assert rounded(ends(result)) == expected_ends
    assert all(a.start <= b.start for a, b in zip(result.lines, result.lines[1:]))


def test_the_server_and_the_model_stubs_run_on_tcmalloc(triton_server):
    """scripts/serve.py preloads it (launcher.allocator_preload): glibc's malloc faults every pass's activations in
    again."""
    processes = [psutil.Process(pid) for pid in triton_server.descendant_pids()]
    assert len(triton_server.stub_pids()) >= 2  # qwen3_aligner's and silero_vad's
    for process in processes:
        assert any("libtcmalloc_minimal" in mapping.path for mapping in process.memory_maps()), process.cmdline()[:2]


@pytest.mark.parametrize("protocol", ["http", "grpc"])
@pytest.mark.parametrize("hint, name", [(None, "Chinese"), ("zh-CN", "Chinese"), ("cmn", "Chinese"),
                                        ("jpn", "Japanese"), ("Korean", "Korean"), ("spa", "Spanish")])
def test_language_name_is_the_resolved_hint(triton_server, protocol, hint, name):
    module, url = (grpcclient, triton_server.grpc_url) if protocol == "grpc" else (httpclient, triton_server.http_url)
    client = grpc_client(url) if protocol == "grpc" else http_client(url)
    try:
        result = client.infer(MODEL, build_inputs(module, speech(2.0), "奇异恩典 amazing grace", hint))
    finally:
        client.close()
    assert answer_of(result).language == name


def test_unit_outputs_back_the_line_times(triton_server):
    client = http_client(triton_server.http_url)
    result = client.infer(MODEL, build_inputs(httpclient, speech(5.0), MIXED))
    client.close()
    answer = answer_of(result)
    units = [unit.text for unit in answer.units]
    unit_line = [unit.line for unit in answer.units]
    unit_start = [unit.start for unit in answer.units]
    assert units == [
        "主", "啊", "Lord", "你", "是", "我", "的", "力", "量", "my", "strength", "Hallelujah", "哈", "利", "路", "亚"]
    assert unit_line == [0, 0, 0, 2, 2, 2, 2, 2, 2, 2, 2, 4, 4, 4, 4, 4]
    for line, start in enumerate(starts(answer)):
        if line in unit_line:
            assert start == unit_start[unit_line.index(line)]
