"""The timestamp head at the timestamp tokens only gives the full head's logits there, to float rounding."""
from __future__ import annotations

import pytest
import torch
from qwen_asr import Qwen3ForcedAligner

from sow_aligner.engine import AUDIO_PROMPT, TIMESTAMP_PAIR
from sow_aligner.timestamp_head import TimestampHead
from support.audio import speech
from support.logits import assert_same_logits


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_real_size_head_on_a_subset_of_rows(dtype):
    """The real head's shape (1024 -> 5000) over 600 tokens, 200 of them timestamps."""
    generator = torch.Generator().manual_seed(1)
    head = torch.nn.Linear(1024, 5000, bias=False).to(dtype)
    torch.nn.init.normal_(head.weight, std=0.03, generator=generator)
    hidden = torch.randn(1, 600, 1024, generator=generator).to(dtype)
    positions = torch.zeros(600, dtype=torch.bool)
    positions[torch.randperm(600, generator=generator)[:200]] = True
    wrapped = TimestampHead(head)
    with torch.inference_mode():
        full = head(hidden)[0][positions]
        with wrapped.at(positions):
            rows = wrapped(hidden)[0]
        assert torch.equal(wrapped(hidden), head(hidden))  # outside at(): the plain head
    assert_same_logits(full, rows, dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_thinker_forward_with_the_head_at_timestamps(tiny_model_dir, dtype):
    aligner = Qwen3ForcedAligner.from_pretrained(str(tiny_model_dir), dtype=dtype, device_map="cpu")
    thinker = aligner.model.thinker
    units = list("奇异恩典何等甘甜我罪已得赦免")
    prompt = AUDIO_PROMPT + TIMESTAMP_PAIR.join(units) + TIMESTAMP_PAIR
    inputs = aligner.processor(text=[prompt], audio=[speech(6.0)], return_tensors="pt", padding=True).to(dtype)
    positions = inputs["input_ids"][0] == aligner.timestamp_token_id
    assert int(positions.sum()) == 2 * len(units)
    with torch.inference_mode():
        full = thinker(**inputs, use_cache=False).logits[0][positions]
        thinker.lm_head = TimestampHead(thinker.lm_head)
        with thinker.lm_head.at(positions):
            rows = thinker(**inputs, use_cache=False).logits[0]
    assert len(set(full.argmax(-1).tolist())) > 3  # the tiny model's classes vary along the text
    assert_same_logits(full, rows, dtype)
