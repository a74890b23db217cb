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
"""
from __future__ import annotations

import torch
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

from .last_layer import decoder_layers

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


def compile_layers(thinker: torch.nn.Module) -> None:
    """Compile each decoder layer's ``forward`` of ``thinker`` (at its first call), their attention on contiguous
    heads where it was sdpa; harmless when done already."""
    config = thinker.model.config
    if config._attn_implementation == SDPA:
        config._attn_implementation = CONTIGUOUS_SDPA
    for layer in decoder_layers(thinker):
        if not getattr(layer, COMPILED_FLAG, False):
            layer.forward = torch.compile(layer.forward, dynamic=True, options=OPTIONS)
            setattr(layer, COMPILED_FLAG, True)


def uncompile_layers(thinker: torch.nn.Module) -> None:
    """Put back the eager ``forward`` of every layer ``compile_layers`` compiled, and their sdpa attention."""
    config = thinker.model.config
    if config._attn_implementation == CONTIGUOUS_SDPA:
        config._attn_implementation = SDPA
    for layer in decoder_layers(thinker):
        if getattr(layer, COMPILED_FLAG, False):
            del layer.forward  # the instance attribute: the class's forward shows through again
            delattr(layer, COMPILED_FLAG)


def is_compiled(thinker: torch.nn.Module) -> bool:
    """Whether ``thinker``'s decoder layers run compiled."""
    return all(getattr(layer, COMPILED_FLAG, False) for layer in decoder_layers(thinker))
