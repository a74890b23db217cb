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
warm-up). ``uncompile_layers`` puts the eager ``forward`` back.

The fused loops round to bfloat16 wherever eager does
(``emulate_precision_casts``): without that, a fused loop keeps float32
between steps and the informative tiny checkpoint's timestamp classes moved
in 21 of 292 slots; with it none moved, at the same speed (the Intel Xeon
with AMX: 120 s song 5.2-5.6 s eager, 4.1 s compiled either way).
tests/core/test_decoder_compile.py holds the timestamp classes equal and the
confidences within ``support.batch_invariance.CONFIDENCE_TOLERANCE`` (the
matmuls and attention may still be blocked otherwise).
"""
from __future__ import annotations

import torch

COMPILED_FLAG = "_sow_compiled"
# Inductor's options for these layers: round as eager rounds.
OPTIONS = {"emulate_precision_casts": True}


def decoder_layers(thinker: torch.nn.Module) -> list[torch.nn.Module]:
    """The text decoder's layers of a ``Qwen3ASRThinkerForConditionalGeneration``."""
    return list(thinker.model.layers)


def compile_layers(thinker: torch.nn.Module) -> None:
    """Compile each decoder layer's ``forward`` of ``thinker`` (at its first call); harmless when done already."""
    for layer in decoder_layers(thinker):
        if not getattr(layer, COMPILED_FLAG, False):
            layer.forward = torch.compile(layer.forward, dynamic=True, options=OPTIONS)
            setattr(layer, COMPILED_FLAG, True)


def uncompile_layers(thinker: torch.nn.Module) -> None:
    """Put back the eager ``forward`` of every layer ``compile_layers`` compiled."""
    for layer in decoder_layers(thinker):
        if getattr(layer, COMPILED_FLAG, False):
            del layer.forward  # the instance attribute: the class's forward shows through again
            delattr(layer, COMPILED_FLAG)


def is_compiled(thinker: torch.nn.Module) -> bool:
    """Whether ``thinker``'s decoder layers run compiled."""
    return all(getattr(layer, COMPILED_FLAG, False) for layer in decoder_layers(thinker))
