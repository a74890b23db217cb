"""The audio encoder's linear layers with each bias added inside oneDNN's matmul (CPU, bfloat16).

On CPU ``nn.Linear`` with a bias runs ``addmm``: it first copies the bias into
every row of the output, then accumulates the product onto it. oneDNN's own
linear (``torch.ops.mkldnn._linear_pointwise`` without a post-op) adds the
bias to each float32 sum in its own loop: one pass over the output fewer, and
the same result bit for bit, since either way the bias joins the float32 sum
before its one rounding to bfloat16. The audio encoder has eight such layers
per block (queries, keys, values, output, the two feed-forward ones) and its
projections after the blocks; the text decoder's layers have no bias.

``fuse_linear_biases`` gives the biased ``nn.Linear`` modules of one loaded
model's audio encoders (instance attributes: the class and other models are
untouched) ``linear_with_bias``. It checks first that the two forms agree bit
for bit here, and logs why when it does not use it. On the Intel Xeon with
AMX the 120 s bench song's audio encoding took 65-85 ms less, at
bit-identical output (docs/benchmarks.md); tests/core/test_encoder_linears.py
holds the encoder's output equal.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .instance_forwards import audio_encoders, give_forward

FUSED_FLAG = "_sow_bias_fused"


def linear_with_bias(linear: nn.Linear, states: torch.Tensor) -> torch.Tensor:
    """``F.linear(states, linear.weight, linear.bias)`` as one oneDNN linear that adds the bias to its float32 sums."""
    return torch.ops.mkldnn._linear_pointwise(states, linear.weight, linear.bias, "none", [], "")


def fuse_linear_biases(model: nn.Module) -> bool:
    """Give every ``nn.Linear`` with a bias inside ``model``'s audio encoders ``linear_with_bias``; whether they
    now have it.

    First checks on a random input that oneDNN's linear runs here and equals
    ``F.linear`` bit for bit; if not, logs why and changes nothing. Harmless
    when done already. Raises ValueError when ``model`` holds no audio encoder.
    """
    linears = [module for encoder in audio_encoders(model) for module in encoder.modules()
               if isinstance(module, nn.Linear) and module.bias is not None]
    return bool(linears) and give_forward(linears, linear_with_bias, FUSED_FLAG, lambda: _check(linears[0]),
                                          "audio encoder's linears not fused, running addmm")


def _check(linear: nn.Linear) -> None:
    """Raise unless ``linear_with_bias`` equals ``F.linear`` bit for bit here, on a random input and a layer of
    ``linear``'s shape, dtype and device with random weights and bias (its own bias may be zeros, which would
    prove nothing)."""
    generator = torch.Generator().manual_seed(0)
    parameter = linear.weight
    probe = nn.Linear(linear.in_features, linear.out_features, device=parameter.device, dtype=parameter.dtype)
    states = torch.randn(37, linear.in_features, generator=generator).to(parameter.device, parameter.dtype)
    with torch.inference_mode():
        for tensor in (probe.weight, probe.bias):
            tensor.copy_(torch.randn(tensor.shape, generator=generator))
        fused = linear_with_bias(probe, states)
        stock = F.linear(states, probe.weight, probe.bias)
    if not torch.equal(fused, stock):
        raise RuntimeError(f"oneDNN's linear differs from addmm by up to {(fused - stock).abs().max().item():.3g}")
