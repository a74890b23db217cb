"""The evidence outputs of qwen3_aligner and the silero_vad model, against the real tritonserver."""
from __future__ import annotations

import dataclasses
import json
import urllib.request
from collections.abc import Sequence

import numpy as np
import pytest
import torch
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from sow_aligner import voice_activity
from sow_qwen3.client import response_columns
from sow_qwen3_contract.quality import in_order, song_verdict, voiced_fraction
from sow_qwen3_contract.tensors import ALIGNER_OUTPUTS, LINE_OUTPUTS, SAMPLE_RATE, UNIT_OUTPUTS, VAD_OUTPUTS
from sow_qwen3_tools.local_server import http_status, start_server
from support.audio import noise, speech
from support.infer import MODEL, answer_of, build_inputs, grpc_client, http_client, outcomes_of
from support.song import config_thresholds, song_audio
from support.stopping import assert_clean_stop

pytestmark = pytest.mark.server  # needs the real tritonserver

VAD = "silero_vad"
# The outputs qwen3_aligner had before the evidence outputs came: what a client of then asks for.
BEFORE_EVIDENCE = ("LINE_TEXT", "LINE_START", "LINE_END", "UNIT_TEXT", "UNIT_START", "UNIT_END", "UNIT_LINE")
ZH = "奇异恩典 何等甘甜\n我罪已得赦免\n前我失丧 今被寻回\n瞎眼今得看见"


def clip() -> np.ndarray:
    """Silence-ish noise, then speech, then noise: some lines land on voice, some do not."""
    return np.concatenate([noise(1.5, seed=7, level=0.02), speech(4.5), noise(1.0, seed=8, level=0.02)])


def infer(url: str, model: str, inputs, outputs: Sequence[str] | None = None) -> httpclient.InferResult:
    """One HTTP request for ``outputs`` (None: every output the model has), answered as Triton sent it."""
    requested = None if outputs is None else [httpclient.InferRequestedOutput(name) for name in outputs]
    client = http_client(url)
    try:
        return client.infer(model, inputs, outputs=requested)
    finally:
        client.close()


def vad_inputs(module, audio: np.ndarray) -> list:
    return build_inputs(module, audio, "x")[:1]  # AUDIO only


def segments_of(result) -> list[tuple[float, float]]:
    return list(zip(result.as_numpy("SEGMENT_START")[0].tolist(), result.as_numpy("SEGMENT_END")[0].tolist()))


def stock_slot_confidences(aligner, audio: np.ndarray, lyrics: str, language: str) -> list[float]:
    """Softmax probability of the chosen class at each timestamp slot, from stock qwen-asr's own forward pass."""
    seen = {}

    def capture(module, args, kwargs, output):
        seen["ids"], seen["logits"] = kwargs["input_ids"][0], output.logits[0]

    hook = aligner.model.thinker.register_forward_hook(capture, with_kwargs=True)
    try:
        aligner.align((audio, SAMPLE_RATE), lyrics, language)
    finally:
        hook.remove()
    slots = seen["logits"][seen["ids"] == aligner.timestamp_token_id].float()
    return torch.softmax(slots, dim=-1).max(dim=-1).values.tolist()


def test_silero_vad_is_its_own_model_with_its_own_instances(triton_server):
    with urllib.request.urlopen(f"http://{triton_server.http_url}/v2/models/{VAD}/config") as response:
        config = json.load(response)
    assert config["instance_group"][0]["count"] >= 1 and config["instance_group"][0]["kind"] == "KIND_CPU"
    assert [o["name"] for o in config["output"]] == list(VAD_OUTPUTS)
    assert triton_server.is_ready()


def test_silero_vad_over_http_and_grpc_equals_the_model_code_in_process(triton_server):
    song = song_audio()
    module = voice_activity
    expected = module.SileroVad(module.SegmentSettings()).run(song)
    over_http = infer(triton_server.http_url, VAD, vad_inputs(httpclient, song))
    client = grpc_client(triton_server.grpc_url)
    try:
        over_grpc = client.infer(VAD, vad_inputs(grpcclient, song))
    finally:
        client.close()
    for result in (over_http, over_grpc):
        assert segments_of(result) == list(zip(expected.segment_start.tolist(), expected.segment_end.tolist()))
        np.testing.assert_allclose(result.as_numpy("FRAME_PROBABILITY")[0], expected.frame_probability, atol=1e-6)
    assert len(segments_of(over_http)) >= 10


def test_a_bad_vad_request_in_a_batch_leaves_the_others_intact(triton_server):
    good = [speech(2.0 + i) for i in range(4)]
    alone = [segments_of(infer(triton_server.http_url, VAD, vad_inputs(httpclient, audio))) for audio in good]
    bad = np.full(SAMPLE_RATE, np.nan, np.float32)
    client = http_client(triton_server.http_url, concurrency=6)
    try:
        blocker = client.async_infer(VAD, vad_inputs(httpclient, noise(240.0, seed=5)))
        pending = [client.async_infer(VAD, vad_inputs(httpclient, audio)) for audio in (good[0], bad, *good[1:])]
        outcomes = outcomes_of(pending, segments_of)
        blocker.get_result()
    finally:
        client.close()
    assert isinstance(outcomes[1], InferenceServerException) and outcomes[1].status() == "400"
    assert "non-finite" in outcomes[1].message()
    assert [outcomes[0], *outcomes[2:]] == alone


def test_confidence_equals_a_softmax_of_stock_qwen_asr_logits(single_pass_server, reference_aligner):
    audio = speech(6.0)
    answer = answer_of(infer(single_pass_server.http_url, MODEL, build_inputs(httpclient, audio, ZH, "Chinese")))
    slots = stock_slot_confidences(reference_aligner, audio, ZH, "Chinese")
    units = [len(reference_aligner.aligner_processor.encode_timestamp(line, "Chinese")[0]) for line in ZH.splitlines()]
    expected_units = [(slots[i] + slots[i + 1]) / 2 for i in range(0, len(slots), 2)]
    expected_lines, cursor = [], 0
    for count in units:
        expected_lines.append(sum(slots[cursor:cursor + 2 * count]) / (2 * count))
        cursor += 2 * count
    unit_confidence = np.array([unit.confidence for unit in answer.units])
    assert len(set(np.round(unit_confidence, 4))) >= 3, "the tiny model's confidences must vary for a real test"
    assert 0.0 < unit_confidence.min() and unit_confidence.max() <= 1.0
    np.testing.assert_allclose(unit_confidence, expected_units, atol=1e-4)
    np.testing.assert_allclose([line.confidence for line in answer.lines], expected_lines, atol=1e-4)


def test_flags_and_verdict_follow_the_rules_from_the_outputs(triton_server):
    audio, rules = clip(), config_thresholds()
    answer = answer_of(infer(triton_server.http_url, MODEL, build_inputs(httpclient, audio, ZH, "Chinese")))
    segments = segments_of(infer(triton_server.http_url, VAD, vad_inputs(httpclient, audio)))
    starts, ends = [line.start for line in answer.lines], [line.end for line in answer.lines]
    confidence = [line.confidence for line in answer.lines]
    voiced = [line.voiced_fraction for line in answer.lines]
    repaired = [unit.repaired for unit in answer.units]
    unit_line = [unit.line for unit in answer.units]
    flags = [list(line.flags) for line in answer.lines]
    assert voiced == pytest.approx([voiced_fraction(s, e, segments) for s, e in zip(starts, ends)], abs=1e-6)
    assert len(set(voiced)) >= 2, "the clip must give lines of different voicing"
    for index, codes in enumerate(flags):
        changed = sum(bin(bits).count("1") for bits, line in zip(repaired, unit_line) if line == index)
        slots = 2 * unit_line.count(index)
        expected = []
        if voiced[index] < rules.unvoiced_below:
            expected.append("unvoiced")
        if ends[index] - starts[index] < rules.zero_length_below_s:
            expected.append("zero_length")
        if index and starts[index] - starts[index - 1] < rules.collapsed_within_s:
            expected.append("collapsed")
        if 2 * changed > slots:
            expected.append("repaired")
        if confidence[index] < rules.low_confidence_below:
            expected.append("low_confidence")
        assert codes == in_order(expected), (index, codes)
    assert answer.quality.mean_voiced_fraction == pytest.approx(sum(voiced) / len(voiced), abs=1e-6)
    assert answer.quality.verdict == song_verdict(voiced, flags, rules)


def test_every_output_is_answered_and_the_evidence_is_about_the_lines(triton_server):
    """The server answers exactly the contract's outputs (ALIGNER_OUTPUTS, which config.pbtxt declares:
    tests/contract/test_model_configs.py), each [1, n], and the evidence outputs describe the line outputs:
    every line's units give its times and its confidence, the voiced segments are silero_vad's for the clip
    and give LINE_VOICED, and SONG_VOICED / SONG_VERDICT follow from the lines."""
    audio = clip()
    result = infer(triton_server.http_url, MODEL, build_inputs(httpclient, audio, ZH, "Chinese"))
    answered = {output["name"]: output["shape"] for output in result.get_response()["outputs"]}
    assert sorted(answered) == sorted(ALIGNER_OUTPUTS)
    assert all(shape[0] == 1 and len(shape) == 2 for shape in answered.values()), answered
    answer = answer_of(result, ALIGNER_OUTPUTS)
    segments = segments_of(infer(triton_server.http_url, VAD, vad_inputs(httpclient, audio)))
    assert answer.voiced == tuple(segments) and len(segments) >= 1, (answer.voiced, segments)
    assert [line.text for line in answer.lines] == ZH.splitlines()
    assert sorted({unit.line for unit in answer.units}) == list(range(len(answer.lines))), "every line has units"
    for index, line in enumerate(answer.lines):
        own = [unit for unit in answer.units if unit.line == index]
        assert (line.start, line.end) == (own[0].start, own[-1].end), index
        assert line.confidence == pytest.approx(sum(unit.confidence for unit in own) / len(own), abs=1e-6), index
        assert line.voiced_fraction == pytest.approx(voiced_fraction(line.start, line.end, answer.voiced), abs=1e-6)
        assert line.line_pass >= 1
    voiced = [line.voiced_fraction for line in answer.lines]
    assert len(set(voiced)) >= 2, "the clip must give lines of different voicing for this test to mean anything"
    assert answer.quality.mean_voiced_fraction == pytest.approx(sum(voiced) / len(voiced), abs=1e-6)
    assert answer.quality.verdict == song_verdict(voiced, [line.flags for line in answer.lines], config_thresholds())


def test_existing_outputs_are_unchanged_by_the_evidence(triton_server):
    """A client that asks only for the outputs of before the evidence (or for everything but the voiced
    segments) gets the same values as one that asks for every output: the evidence adds, it changes nothing."""
    audio = clip()
    inputs = build_inputs(httpclient, audio, ZH, "Chinese")
    everything = infer(triton_server.http_url, MODEL, inputs)
    before = infer(triton_server.http_url, MODEL, inputs, BEFORE_EVIDENCE)
    assert sorted(output["name"] for output in before.get_response()["outputs"]) == sorted(BEFORE_EVIDENCE)
    old, new = response_columns(before, BEFORE_EVIDENCE), response_columns(everything, BEFORE_EVIDENCE)
    for name in BEFORE_EVIDENCE:
        assert old[name].tolist() == new[name].tolist(), name
    full = answer_of(everything, ALIGNER_OUTPUTS)
    assert full.voiced, "the VAD ran: the voiced segments are there to leave out"
    without_voiced = answer_of(infer(triton_server.http_url, MODEL, inputs, LINE_OUTPUTS + UNIT_OUTPUTS),
                               LINE_OUTPUTS + UNIT_OUTPUTS)
    assert without_voiced == dataclasses.replace(full, voiced=None)


@pytest.fixture(scope="module")
def server_without_vad(tiny_model_dir, server_logs):
    """The real server with silero_vad unloaded by an operator (the repository API, explicit model control)."""
    server = start_server(tiny_model_dir, server_logs)
    request = urllib.request.Request(f"http://{server.http_url}/v2/repository/models/silero_vad/unload",
                                     data=b"", method="POST")
    with urllib.request.urlopen(request, timeout=60) as response:
        assert response.status == 200
    assert http_status(f"http://{server.http_url}/v2/models/silero_vad/ready") != 200
    yield server
    assert_clean_stop(server)


def test_without_the_vad_alignment_still_answers_and_says_so(server_without_vad, single_pass_server):
    audio = clip()
    without = answer_of(infer(server_without_vad.http_url, MODEL, build_inputs(httpclient, audio, ZH, "Chinese")))
    with_vad = answer_of(infer(single_pass_server.http_url, MODEL, build_inputs(httpclient, audio, ZH, "Chinese")))
    # Pass 1 does not depend on the VAD; which lines re-alignment repairs does (unvoiced is a flag).
    first_pass = [index for index, line in enumerate(without.lines) if line.line_pass == 1]
    assert first_pass
    for index in first_pass:
        ours, theirs = without.lines[index], with_vad.lines[index]
        assert (ours.start, ours.end, ours.confidence) == (theirs.start, theirs.end, theirs.confidence), index
    assert all(line.voiced_fraction is None for line in without.lines)  # NaN on the wire: not measured
    assert without.quality.mean_voiced_fraction is None
    assert without.voiced == ()  # no voiced segments when the VAD was not run
    assert all("vad_unavailable" in line.flags for line in without.lines)
    assert without.quality.verdict in ("review", "fail")
    assert "voice activity not measured: silero_vad" in server_without_vad.log()
