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

Given a ``kernel`` (the engine passes ``amx_attention.windows_kernel``
where the AMX kernel runs), each group of windows it takes (bfloat16) goes
to it instead, in one call: it reads the projections where they lie and
writes the output as ``out_proj`` takes it.
"""
from __future__ import annotations

import itertools
from collections.abc import Callable
from functools import partial

import torch
from qwen_asr.core.transformers_backend.modeling_qwen3_asr import Qwen3ASRAudioAttention, eager_attention_forward
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

from .instance_forwards import audio_encoders

WINDOWED_FLAG = "_sow_windowed_attention"

# (query, key, value, windows, scale) -> the attention output (tokens, heads, head size), or None when the kernel
# does not take these tensors: the three are (tokens, heads, head size), the tokens `windows` consecutive windows
# of equal length, and each token attends its own window's keys only, softmax of scale x scores.
WindowsKernel = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, int, float], torch.Tensor | None]


def enable_windowed_attention(model: torch.nn.Module, kernel: WindowsKernel | None = None) -> bool:
    """Make every audio encoder inside ``model`` attend only within its windows.

    ``model`` is any module holding ``Qwen3ASRAudioEncoder`` instances (the
    ``Qwen3ASRForConditionalGeneration`` a ``Qwen3ForcedAligner`` keeps as
    ``.model``, its ``.thinker``, or an encoder itself).

    Afterwards an encoder call whose input is one window (a clip of at most
    8 s) runs qwen-asr's own code and gives bit-identical output; a longer one
    gives each window what it would get were it encoded alone (equal up to
    float rounding, since its batching differs). With ``kernel``, the groups
    of windows whose tensors it takes run it; it must agree with the model's
    own attention within its dtype's rounding.

    Returns whether anything changed: False when the encoders use
    flash_attention_2 (which windows already) or are windowed already, so
    calling it twice is harmless. Raises ValueError when ``model`` holds no
    audio encoder.
    """
    encoders = audio_encoders(model)
    changed = False
    for encoder in encoders:
        if encoder.config._attn_implementation == "flash_attention_2":
            continue
        for attention in encoder.modules():
            if isinstance(attention, Qwen3ASRAudioAttention) and not getattr(attention, WINDOWED_FLAG, False):
                attention.forward = partial(_windowed_forward, attention, attention.forward, kernel)
                setattr(attention, WINDOWED_FLAG, True)
                changed = True
    return changed


def _windowed_forward(
    attention: Qwen3ASRAudioAttention,
    stock_forward: Callable[..., torch.Tensor],
    kernel: WindowsKernel | None,
    hidden_states: torch.Tensor,
    cu_seqlens: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    **kwargs,
) -> torch.Tensor:
    """``Qwen3ASRAudioAttention.forward`` with attention confined to each window.

    ``hidden_states`` is (sequence, d_model); ``cu_seqlens`` the window
    boundaries, 0 first and the sequence length last. One window, or an
    explicit ``attention_mask``, goes to the stock forward unchanged; a group
    of windows whose tensors ``kernel`` takes runs it.
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
        states = [tensor[start:stop] for tensor in (query, key, value)]
        output = None if kernel is None else kernel(*states, count, attention.scaling)
        if output is None:
            output, _ = attend(  # (count, length, heads, head_dim)
                attention, *(_as_windows(tensor, count) for tensor in states),
                attention_mask=None,
                dropout=attention.attention_dropout if attention.training else 0.0,
                scaling=attention.scaling,
                is_causal=False,
                **kwargs,
            )
        outputs.append(output.reshape(count * length, -1))
        start = stop
    return attention.out_proj(outputs[0] if len(outputs) == 1 else torch.cat(outputs))


def _as_windows(states: torch.Tensor, count: int) -> torch.Tensor:
    """(count * length, heads, head_dim) -> (count, heads, length, head_dim), a view."""
    return states.reshape(count, -1, *states.shape[1:]).transpose(1, 2)
