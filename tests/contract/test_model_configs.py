"""The model repository's config.pbtxt files declare exactly the tensor names of sow_qwen3_contract.tensors."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from sow_qwen3_contract import tensors

REPOSITORY = Path(__file__).resolve().parents[2] / "model_repository"
SECTION = re.compile(r"^(input|output)\s*\[(.*?)^\]", re.M | re.S)
NAME = re.compile(r'\bname:\s*"([^"]+)"')


def declared(config: Path) -> dict[str, list[str]]:
    """The input and output names of the config.pbtxt ``config``, in the order written (comments dropped)."""
    text = re.sub(r"#[^\n]*", "", config.read_text(encoding="utf-8"))
    names: dict[str, list[str]] = {"input": [], "output": []}
    for kind, body in SECTION.findall(text):
        names[kind] += NAME.findall(body)
    return names


def test_the_parser_reads_a_config_it_is_given(tmp_path):
    config = tmp_path / "config.pbtxt"
    config.write_text('name: "m"\ninput [\n  {\n    name: "A"  # a comment: name: "X"\n  }\n]\n'
                                                 'output [\n  { name: "B" },\n  {\n    name: "C"\n  }\n]\n'
                                                 'parameters [\n  { key: "k" value: { string_value: "v" } }\n]\n')
    assert declared(config) == {"input": ["A"], "output": ["B", "C"]}


def test_qwen3_aligner_declares_the_contract_inputs_and_outputs():
    names = declared(REPOSITORY / tensors.ALIGNER_MODEL / "config.pbtxt")
    assert names["input"] == [tensors.AUDIO, tensors.LYRICS, tensors.LANGUAGE]
    assert len(set(names["output"])) == len(names["output"]), "an output declared twice"
    assert sorted(names["output"]) == sorted(tensors.ALIGNER_OUTPUTS)


def test_silero_vad_declares_the_contract_outputs():
    names = declared(REPOSITORY / tensors.VAD_MODEL / "config.pbtxt")
    assert names == {"input": [tensors.AUDIO], "output": list(tensors.VAD_OUTPUTS)}


@pytest.mark.parametrize("model", [tensors.ALIGNER_MODEL, tensors.VAD_MODEL])
def test_the_config_names_its_model(model):
    text = (REPOSITORY / model / "config.pbtxt").read_text(encoding="utf-8")
    assert re.search(rf'^name:\s*"{model}"', text, re.M)


def test_the_shipped_thresholds_are_config_pbtxts():
    from sow_qwen3_contract.quality import SHIPPED_THRESHOLDS
    from support.song import config_thresholds

    assert SHIPPED_THRESHOLDS == config_thresholds()
