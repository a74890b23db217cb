"""The text decoder's layers compiled with ``torch.compile`` (inductor), for CPUs whose matmuls are fast.

Eager PyTorch runs a decoder layer's elementwise work (RMSNorm in float32
and back, the per-head query and key norms, the rotary embedding, SiLU and
the gate product, the residual adds) as a dozen separate passes over
memory. Where matmuls are fast (an Intel Xeon with AMX in bfloat16) that was
a third of the decoder's time; inductor fuses it into a few C++ loops, and
the matmuls and attention stay the same oneDNN kernels.

``compile_layers`` replaces the ``forward`` of each layer of one model
(instance attributes: qwen-asr's classes and other model instances are
untouched) with one compiled for any prompt length (``dynamic=True``); the
layers share one compiled graph, since they share their code. Nothing is
compiled until the first forward pass, which the engine makes at load (its
warm-up). ``uncompile_layers`` puts the eager ``forward`` back. A last
layer narrowed to the timestamp head's rows (``last_layer``) is compiled
for the passes that run it whole; its narrowed form stays eager, which
costs no compile at load: on the 120 s and 300 s bench songs it took 49 and
128 ms eager, 39 and 99 ms compiled, against 91 and 288 ms for the whole
compiled layer (Intel Xeon with AMX).

The fused loops round to bfloat16 wherever eager does
(``emulate_precision_casts``): without that, a fused loop keeps float32
between steps and the informative tiny checkpoint's timestamp classes moved
in 21 of 292 slots; with it none moved, at the same speed (the Intel Xeon
with AMX: 120 s song 5.2-5.6 s eager, 4.1 s compiled either way).
tests/core/test_decoder_compile.py holds the timestamp classes equal and the
confidences within ``support.batch_invariance.CONFIDENCE_TOLERANCE`` (the
matmuls and attention may still be blocked otherwise).

The compiled layers' attention takes its heads contiguous
(``contiguous_heads_sdpa``, registered with transformers as
``CONTIGUOUS_SDPA``). qwen-asr hands sdpa the query, key and value as
transposed views of the projections; compiled, inductor writes the fused
norm and rotary embedding in the heads' own layout and then copies it back
to those strides for the flash kernel, which also runs slower on them. With
contiguous heads the copy is gone and the kernel reads contiguous rows, at
bit-identical output: the 120 s bench song's decoder 11 % faster on the
Intel Xeon with AMX. Eager, the same copies cost what they save (float32
and uncompiled bfloat16 unchanged), so only the compiled layers use it.

The compiled layers' attention turns the queries and keys by the rotary
embedding half by half (``attention_forward``, ``last_layer.rotated``):
bit-identical to qwen-asr's form, which made inductor split the query and
key norms and the rotation into three loops with the swapped halves written
to memory between them; now each tensor takes one loop. On the 120 s bench
song that was 10.2 ms of each layer's 2740 tokens, now 5.1 ms (Intel Xeon
with AMX, bfloat16).
"""
from __future__ import annotations

from types import MethodType

import torch
from qwen_asr.core.transformers_backend.modeling_qwen3_asr import eager_attention_forward
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

from .last_layer import decoder_layers, rotated

COMPILED_FLAG = "_sow_compiled"
# Inductor's options for these layers: round as eager rounds.
OPTIONS = {"emulate_precision_casts": True}
# The attention implementation of the compiled layers, and the one it stands in for.
CONTIGUOUS_SDPA = "sow_contiguous_sdpa"
SDPA = "sdpa"


def contiguous_heads_sdpa(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                          attention_mask: torch.Tensor | None, **kwargs) -> tuple[torch.Tensor, None]:
    """transformers' sdpa attention of (batch, heads, tokens, head size) ``query``, ``key`` and ``value`` laid out
    contiguously first: the same kernel on the same values, so bit for bit its output."""
    return sdpa_attention_forward(module, query.contiguous(), key.contiguous(), value.contiguous(), attention_mask,
                                  **kwargs)


AttentionInterface.register(CONTIGUOUS_SDPA, contiguous_heads_sdpa)
AttentionMaskInterface.register(CONTIGUOUS_SDPA, sdpa_mask)  # the masks sdpa gets: none where causal suffices


def attention_forward(attention: torch.nn.Module, hidden_states: torch.Tensor,
                      position_embeddings: tuple[torch.Tensor, torch.Tensor], attention_mask: torch.Tensor | None,
                      past_key_values=None, cache_position: torch.Tensor | None = None,
                      **kwargs) -> tuple[torch.Tensor, torch.Tensor | None]:
    """qwen-asr's ``Qwen3ASRTextAttention.forward`` of ``attention`` with the queries and keys turned by
    ``last_layer.rotated``: the same operations in the same order, so bit for bit its output. A call with a
    key-value cache (never the engine's) goes to the class's own ``forward``.

    Bound to each compiled layer's attention as a method (``types.MethodType``), so that the layers still share
    one compiled graph: dynamo guards on a ``functools.partial`` object, and one per layer compiled each layer
    again."""
    if past_key_values is not None:
        return type(attention).forward(attention, hidden_states, position_embeddings, attention_mask,
                                       past_key_values=past_key_values, cache_position=cache_position, **kwargs)
    input_shape = hidden_states.shape[:-1]
    heads_shape = (*input_shape, -1, attention.head_dim)
    query = attention.q_norm(attention.q_proj(hidden_states).view(heads_shape)).transpose(1, 2)
    key = attention.k_norm(attention.k_proj(hidden_states).view(heads_shape)).transpose(1, 2)
    value = attention.v_proj(hidden_states).view(heads_shape).transpose(1, 2)
    cos, sin = position_embeddings
    implementation = attention.config._attn_implementation
    attend = eager_attention_forward if implementation == "eager" else ALL_ATTENTION_FUNCTIONS[implementation]
    output, weights = attend(attention, rotated(query, cos, sin), rotated(key, cos, sin), value, attention_mask,
                             dropout=attention.attention_dropout if attention.training else 0.0,
                             scaling=attention.scaling, **kwargs)
    return attention.o_proj(output.reshape(*input_shape, -1).contiguous()), weights


def compile_layers(thinker: torch.nn.Module) -> None:
    """Compile each decoder layer's ``forward`` of ``thinker`` (at its first call), its attention's ``forward``
    ``attention_forward`` first, and their attention on contiguous heads where it was sdpa; harmless when done
    already."""
    config = thinker.model.config
    if config._attn_implementation == SDPA:
        config._attn_implementation = CONTIGUOUS_SDPA
    for layer in decoder_layers(thinker):
        if not getattr(layer, COMPILED_FLAG, False):
            attention = layer.self_attn
            attention.forward = MethodType(attention_forward, attention)
            layer.forward = torch.compile(layer.forward, dynamic=True, options=OPTIONS)
            setattr(layer, COMPILED_FLAG, True)


def uncompile_layers(thinker: torch.nn.Module) -> None:
    """Put back the eager ``forward`` of every layer ``compile_layers`` compiled and of its attention, and their
    sdpa attention."""
    config = thinker.model.config
    if config._attn_implementation == CONTIGUOUS_SDPA:
        config._attn_implementation = SDPA
    for layer in decoder_layers(thinker):
        if getattr(layer, COMPILED_FLAG, False):
            del layer.forward  # the instance attributes: the classes' forward shows through again
            del layer.self_attn.forward
            delattr(layer, COMPILED_FLAG)


def is_compiled(thinker: torch.nn.Module) -> bool:
    """Whether ``thinker``'s decoder layers run compiled."""
    return all(getattr(layer, COMPILED_FLAG, False) for layer in decoder_layers(thinker))
