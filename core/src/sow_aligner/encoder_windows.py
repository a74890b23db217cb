"""Windowed attention for qwen-asr's audio encoder under sdpa and eager (CPU).

``Qwen3ASRAudioEncoder.forward`` cuts the encoder input into windows of
``n_window_infer`` mel frames (8 s; 104 embeddings after the CNN) and passes
their boundaries, ``cu_seqlens``, to every attention layer. Only
flash-attention 2 uses them: under sdpa or eager, the only choices on CPU,
the layers get no mask and every embedding attends to the whole clip.

``enable_windowed_attention`` gives one loaded model the flash-attention
behaviour. It replaces the ``forward`` of that model's
``Qwen3ASRAudioAttention`` modules (instance attributes; qwen-asr's classes
and other model instances are untouched) with one that runs the model's own
attention kernel once per group of consecutive equally long windows, each
window a batch item: O(n·w) work and memory instead of O(n²) for a clip of n
embeddings and windows of w. The projections before and after attention
still run over the whole sequence at once.
"""
from __future__ import annotations

import itertools
from collections.abc import Callable
from functools import partial

import torch
from qwen_asr.core.transformers_backend.modeling_qwen3_asr import (
    Qwen3ASRAudioAttention,
    Qwen3ASRAudioEncoder,
    eager_attention_forward,
)
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

WINDOWED_FLAG = "_sow_windowed_attention"


def enable_windowed_attention(model: torch.nn.Module) -> bool:
    """Make every audio encoder inside ``model`` attend only within its windows.

    ``model`` is any module holding ``Qwen3ASRAudioEncoder`` instances (the
    ``Qwen3ASRForConditionalGeneration`` a ``Qwen3ForcedAligner`` keeps as
    ``.model``, its ``.thinker``, or an encoder itself).

    Afterwards an encoder call whose input is one window (a clip of at most
    8 s) runs qwen-asr's own code and gives bit-identical output; a longer one
    gives each window what it would get were it encoded alone (equal up to
    float rounding, since its batching differs).

    Returns whether anything changed: False when the encoders use
    flash_attention_2 (which windows already) or are windowed already, so
    calling it twice is harmless. Raises ValueError when ``model`` holds no
    audio encoder.
    """
    encoders = [module for module in model.modules() if isinstance(module, Qwen3ASRAudioEncoder)]
    if not encoders:
        raise ValueError(f"{type(model).__name__} holds no Qwen3ASRAudioEncoder")
    changed = False
    for encoder in encoders:
        if encoder.config._attn_implementation == "flash_attention_2":
            continue
        for attention in encoder.modules():
            if isinstance(attention, Qwen3ASRAudioAttention) and not getattr(attention, WINDOWED_FLAG, False):
                attention.forward = partial(_windowed_forward, attention, attention.forward)
                setattr(attention, WINDOWED_FLAG, True)
                changed = True
    return changed


def _windowed_forward(
    attention: Qwen3ASRAudioAttention,
    stock_forward: Callable[..., torch.Tensor],
    hidden_states: torch.Tensor,
    cu_seqlens: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    **kwargs,
) -> torch.Tensor:
    """``Qwen3ASRAudioAttention.forward`` with attention confined to each window.

    ``hidden_states`` is (sequence, d_model); ``cu_seqlens`` the window
    boundaries, 0 first and the sequence length last. One window, or an
    explicit ``attention_mask``, goes to the stock forward unchanged.
    """
    lengths = (cu_seqlens[1:] - cu_seqlens[:-1]).tolist()
    if len(lengths) <= 1 or attention_mask is not None:
        return stock_forward(hidden_states, cu_seqlens=cu_seqlens, attention_mask=attention_mask, **kwargs)
    implementation = attention.config._attn_implementation
    attend = eager_attention_forward if implementation == "eager" else ALL_ATTENTION_FUNCTIONS[implementation]
    query, key, value = (
        projection(hidden_states).reshape(hidden_states.shape[0], attention.num_heads, -1)
        for projection in (attention.q_proj, attention.k_proj, attention.v_proj)
    )
    outputs = []
    start = 0
    for length, group in itertools.groupby(lengths):
        count = len(list(group))
        stop = start + count * length
        output, _ = attend(
            attention, *(_as_windows(states[start:stop], count) for states in (query, key, value)),
            attention_mask=None,
            dropout=attention.attention_dropout if attention.training else 0.0,
            scaling=attention.scaling,
            is_causal=False,
            **kwargs,
        )
        outputs.append(output.reshape(count * length, -1))  # output is (count, length, heads, head_dim)
        start = stop
    return attention.out_proj(torch.cat(outputs))


def _as_windows(states: torch.Tensor, count: int) -> torch.Tensor:
    """(count * length, heads, head_dim) -> (count, heads, length, head_dim), a view."""
    return states.reshape(count, -1, *states.shape[1:]).transpose(1, 2)
