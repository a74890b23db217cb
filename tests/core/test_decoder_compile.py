"""The decoder compiled with torch.compile (``sow_aligner.decoder_compile``; CPU, bfloat16, ``compile=auto``):
the timestamp classes are those of the eager decoder on the tiny informative checkpoint, a prompt of another
length compiles nothing more, and a failed compile leaves the model loaded and aligning, uncompiled.
"""
from __future__ import annotations

import logging

import pytest
import torch
from transformers.integrations.sdpa_attention import sdpa_attention_forward

from sow_aligner.batching import BatchBudget
from sow_aligner.decoder_compile import (
    CONTIGUOUS_SDPA,
    SDPA,
    attention_forward,
    contiguous_heads_sdpa,
    is_compiled,
    uncompile_layers,
)
from sow_aligner.last_layer import decoder_layers
from support.audio import speech
from support.engine import assert_timed_alike, cpu_engine, with_qwen_asrs_front_end

ZH = ["奇异恩典 何等甘甜", "我罪已得赦免", "前我失丧 今被寻回", "瞎眼今得看见"]
CALLS = [(speech(20.0), ZH, "Chinese"), (speech(8.5), ZH[:2] * 3, "Chinese")]


def graphs() -> int:
    return torch._dynamo.utils.counters["stats"]["unique_graphs"]


def test_the_compiled_decoder_keeps_every_timestamp_class_and_compiles_once(tiny_model_dir):
    torch._dynamo.reset()
    graphs_before = graphs()
    # PyTorch's attention, as on CPUs without AMX (the AMX kernel: test_amx_attention), and qwen-asr's front end.
    engine = with_qwen_asrs_front_end(cpu_engine(tiny_model_dir, "bfloat16", attention_kernel="sdpa"))
    thinker = engine.aligner.model.thinker
    assert is_compiled(thinker)
    assert thinker.model.layers[0].self_attn.config._attn_implementation == CONTIGUOUS_SDPA
    compiled_graphs = graphs()
    assert compiled_graphs - graphs_before == 1  # one prompt's graph (the last layer runs narrowed, eager)
    fast = [engine.align(*call) for call in CALLS]
    assert graphs() == compiled_graphs, "a prompt of another length compiled again"
    uncompile_layers(thinker)
    assert thinker.model.layers[0].self_attn.config._attn_implementation == SDPA
    assert all("forward" not in vars(layer) and "forward" not in vars(layer.self_attn)
               for layer in decoder_layers(thinker))  # qwen-asr's own forwards again
    eager = [engine.align(*call) for call in CALLS]
    for mine, theirs in zip(fast, eager):
        assert_timed_alike(mine, theirs)


def test_with_batching_on_the_warm_up_compiles_the_batched_pass_too(tiny_model_dir):
    """A batched pass (right-padded prompts, an attention mask) is another graph: compiled at load, so a batch
    of other lengths compiles nothing more, and it times each span as the eager decoder does."""
    torch._dynamo.reset()
    graphs_before = graphs()
    engine = cpu_engine(tiny_model_dir, "bfloat16", batching="on")
    thinker = engine.aligner.model.thinker
    compiled_graphs = graphs()
    # One prompt's graph and the batch's, which both layers share (a functools.partial as each attention's
    # forward made one per layer: dynamo guards on the partial object).
    assert compiled_graphs - graphs_before == 2

    def batched():
        return engine.align_many([engine.clip_span(*call) for call in CALLS], BatchBudget(1e9, 10**12))

    fast = batched()
    assert is_compiled(thinker) and graphs() == compiled_graphs, "a batch of other lengths compiled again"
    uncompile_layers(thinker)
    for mine, theirs in zip(fast, batched()):
        assert (mine.unit_start, mine.unit_end) == (theirs.unit_start, theirs.unit_end)


def test_a_failed_compile_leaves_the_model_aligning_uncompiled(tiny_model_dir, tmp_path, monkeypatch, caplog):
    """A compiler that does not exist, as in an image without g++; no cached kernels to fall back on. The log
    names the compiler, not torch.compile's wrapper."""
    torch._dynamo.reset()
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "inductor"))
    # config.patch, not monkeypatch.setattr: undoing that deleted inductor's options, and every later test in the
    # session then compiled nothing (its engines logged "fx_graph_cache does not exist" and ran eager).
    with torch._inductor.config.patch({"fx_graph_cache": False, "cpp.cxx": (str(tmp_path / "no-such-g++"),)}):
        with caplog.at_level(logging.WARNING, logger="sow_aligner.engine"):
            engine = cpu_engine(tiny_model_dir, "bfloat16")
    assert not is_compiled(engine.aligner.model.thinker)
    warnings = [record.getMessage() for record in caplog.records if "decoder not compiled" in record.getMessage()]
    assert warnings and "No working C++ compiler" in warnings[0], warnings
    assert engine.align(*CALLS[1]).unit_start
    torch._dynamo.reset()
    assert is_compiled(cpu_engine(tiny_model_dir, "bfloat16").aligner.model.thinker)  # nothing left broken


@pytest.mark.parametrize(("dtype", "changes"), [("float32", {}), ("bfloat16", {"compile": "off"})])
def test_float32_and_compile_off_run_uncompiled(tiny_model_dir, dtype, changes):
    # float32 is held exactly to stock qwen-asr, so it stays eager.
    assert not is_compiled(cpu_engine(tiny_model_dir, dtype, **changes).aligner.model.thinker)


class GroupedQueryAttention(torch.nn.Module):
    """What transformers' sdpa attention reads of a decoder layer's attention module: 2 query heads per key head."""
    num_key_value_groups = 2
    is_causal = True


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("padded", [False, True])
def test_attention_on_contiguous_heads_is_bit_for_bit_sdpa(dtype, padded):
    """As qwen-asr hands them over: transposed views of (batch, tokens, heads, head size) projections; with a
    padding mask (a batched pass) the key heads are repeated and the mask taken, as by sdpa itself."""
    generator = torch.Generator().manual_seed(7)
    tokens = 300

    def heads(count: int) -> torch.Tensor:
        return torch.randn(2, tokens, count, 128, generator=generator).to(dtype).transpose(1, 2)

    query, key, value = heads(16), heads(8), heads(8)
    assert not query.is_contiguous()
    mask = None
    if padded:
        causal = torch.ones(tokens, tokens, dtype=torch.bool).tril()
        mask = causal & (torch.arange(tokens) < torch.tensor([[tokens], [tokens - 40]]))[:, None, None, :]
    module = GroupedQueryAttention()
    mine, _ = contiguous_heads_sdpa(module, query, key, value, mask, scaling=128 ** -0.5)
    theirs, _ = sdpa_attention_forward(module, query, key, value, mask, scaling=128 ** -0.5)
    assert mine.shape == theirs.shape == (2, tokens, 16, 128)
    assert torch.equal(mine, theirs)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_the_compiled_layers_attention_forward_is_qwen_asrs_bit_for_bit(tiny_model_dir, dtype):
    """``attention_forward`` (the rotary embedding half by half) against qwen-asr's own forward, eager, on the
    tiny checkpoint's layers with the thinker's own rotary embedding: identical outputs, with and without a mask;
    a call with a key-value cache is the class's forward itself."""
    from transformers import DynamicCache

    engine = cpu_engine(tiny_model_dir, dtype, compile="off")
    thinker = engine.aligner.model.thinker
    generator = torch.Generator().manual_seed(3)
    hidden = (torch.randn(1, 57, thinker.config.text_config.hidden_size, generator=generator) * 4).to(engine.dtype)
    positions = torch.arange(57)[None, None, :].expand(3, 1, -1)
    embeddings = thinker.model.rotary_emb(hidden, positions)
    mask = torch.ones(1, 1, 57, 57, dtype=torch.bool).tril()
    with torch.inference_mode():
        for layer in decoder_layers(thinker):
            attention = layer.self_attn
            for attention_mask in (None, mask):
                mine, _ = attention_forward(attention, hidden, embeddings, attention_mask)
                theirs, _ = attention(hidden, embeddings, attention_mask)
                assert torch.equal(mine, theirs)
            mine, _ = attention_forward(attention, hidden, embeddings, None, past_key_values=DynamicCache())
            theirs, _ = attention(hidden, embeddings, None, past_key_values=DynamicCache())
            assert torch.equal(mine, theirs)
