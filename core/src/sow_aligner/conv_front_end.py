"""The audio encoder's convolution front end with each GELU inside its convolution (CPU, bfloat16).

qwen-asr's ``Qwen3ASRAudioEncoder.forward`` runs three 3x3 convolutions of
stride 2 over the 1 s mel chunks, each followed by GELU: in bfloat16 each
convolution's output is rounded and written, read back, put through GELU
and rounded again. oneDNN can apply the GELU (erf) to each float32 sum in
the convolution's own loop before its one rounding (a post-op,
``torch.ops.mkldnn._convolution_pointwise``): one pass over the largest
activations of the encoder instead of two, and one rounding instead of two.

``fuse_front_end`` gives the audio encoders of one loaded model (instance
attributes; qwen-asr's class and other models are untouched) ``fused_forward``:
qwen-asr's forward, the same steps in the same order, with each convolution
and its GELU one call. The engine uses it where it runs channels-last
(bfloat16 on CPU); float32 keeps stock's computation exactly.

The output is not bit-identical to the two-step form: a GELU output differs
by a bfloat16 step or a few where the convolution's sum lies near a rounding
boundary (a quarter of the first convolution's outputs on random input).
It is closer to the front end in float32, not further: the largest error
halves (0.0078 against 0.016 on the real-size model's first convolution)
and the mean error falls by a third. tests/core/test_conv_front_end.py
holds the error to that, every other step to qwen-asr's in float32, and the
timestamp classes of the informative tiny checkpoint within the noise the
two-step form already has against exact arithmetic. On the Intel Xeon with
AMX the audio encoding of the 120 s bench song took 0.1 s less, and its 600
unit times on the real-size checkpoint did not move (docs/benchmarks.md).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from qwen_asr.core.transformers_backend.modeling_qwen3_asr import (
    Qwen3ASRAudioEncoder,
    _get_feat_extract_output_lengths,
)
from torch import nn
from transformers.modeling_outputs import BaseModelOutput

from .instance_forwards import audio_encoders, give_forward

FUSED_FLAG = "_sow_fused_front_end"


def convolution_with_gelu(convolution: nn.Conv2d, states: torch.Tensor) -> torch.Tensor:
    """``F.gelu(convolution(states))`` as one oneDNN convolution whose GELU (erf) acts on the float32 sums."""
    return torch.ops.mkldnn._convolution_pointwise(
        states, convolution.weight, convolution.bias, convolution.padding, convolution.stride,
        convolution.dilation, convolution.groups, "gelu", [], "none")


def fuse_front_end(model: nn.Module) -> bool:
    """Give every audio encoder inside ``model`` ``fused_forward``; whether any now has it.

    First checks on a random chunk that oneDNN's fused convolution runs here
    and agrees with the two-step form within a few bfloat16 steps; if not,
    logs why and changes nothing. Harmless when done already. Raises
    ValueError when ``model`` holds no audio encoder.
    """
    encoders = audio_encoders(model)
    return give_forward(encoders, fused_forward, FUSED_FLAG, lambda: _check(encoders[0].conv2d1),
                        "audio front end not fused, running qwen-asr's convolutions")


def _check(convolution: nn.Conv2d) -> None:
    """Raise unless the fused convolution of ``convolution`` on a random mel chunk agrees with the two-step form
    to within 4 steps of its dtype at the output's scale."""
    parameter = convolution.weight
    generator = torch.Generator().manual_seed(0)
    chunk = torch.randn(1, convolution.in_channels, 32, 20, generator=generator).to(parameter.device, parameter.dtype)
    with torch.inference_mode():
        fused = convolution_with_gelu(convolution, chunk).float()
        two_step = F.gelu(convolution(chunk)).float()
    step = torch.finfo(parameter.dtype).eps * max(two_step.abs().max().item(), 1e-3)
    error = (fused - two_step).abs().max().item()
    if fused.shape != two_step.shape or not error <= 4 * step:
        raise RuntimeError(f"the fused convolution differs by {error:.3g} from convolution and GELU (at most "
                           f"{4 * step:.3g} expected)")


def fused_forward(encoder: Qwen3ASRAudioEncoder, input_features: torch.Tensor, feature_lens: torch.Tensor | None = None,
                  aftercnn_lens: torch.Tensor | None = None) -> BaseModelOutput:
    """qwen-asr's ``Qwen3ASRAudioEncoder.forward`` (qwen-asr 0.0.6) of ``encoder``, its convolutions and GELUs as
    ``convolution_with_gelu``: the mel features cut into chunks of ``2 * n_window`` frames, the three
    convolutions over ``conv_chunksize`` chunks at a time, ``conv_out`` and the positional embedding per chunk,
    the chunks' valid frames joined, the layers attending within windows of ``n_window_infer`` frames, then
    ``ln_post``, ``proj1``, the activation and ``proj2``."""
    chunk_frames = encoder.n_window * 2
    aftercnn_lens = _get_feat_extract_output_lengths(feature_lens)
    chunk_num = torch.ceil(feature_lens / chunk_frames).long()
    chunk_lengths = torch.tensor([chunk_frames] * chunk_num.sum(), dtype=torch.long, device=feature_lens.device)
    tail_chunk_index = F.pad(chunk_num, (1, 0), value=-1).cumsum(0)[1:]
    chunk_lengths[tail_chunk_index] = feature_lens % chunk_frames
    chunk_lengths[chunk_lengths == 0] = chunk_frames
    chunk_list = input_features.T.split(chunk_lengths.tolist(), dim=0)
    padded_feature = nn.utils.rnn.pad_sequence(chunk_list, batch_first=True).transpose(1, 2)
    padded_mask_after_cnn = nn.utils.rnn.pad_sequence(
        [torch.ones(length, dtype=torch.bool, device=padded_feature.device)
         for length in _get_feat_extract_output_lengths(chunk_lengths)],
        batch_first=True,
    )
    padded_embeds = []
    for chunk in padded_feature.unsqueeze(1).split(encoder.conv_chunksize, dim=0):
        for convolution in (encoder.conv2d1, encoder.conv2d2, encoder.conv2d3):
            chunk = convolution_with_gelu(convolution, chunk)
        padded_embeds.append(chunk)
    padded_embed = torch.cat(padded_embeds, dim=0)
    b, c, f, t = padded_embed.size()
    padded_embed = encoder.conv_out(padded_embed.permute(0, 3, 1, 2).contiguous().view(b, t, c * f))
    positional_embedding = encoder.positional_embedding.positional_embedding[: padded_embed.shape[1], :]
    padded_embed = padded_embed + positional_embedding.unsqueeze(0).to(padded_embed.dtype)
    hidden_states = padded_embed[padded_mask_after_cnn]
    cu_chunk_lens = [0]
    window_aftercnn = padded_mask_after_cnn.shape[-1] * (encoder.n_window_infer // chunk_frames)
    for cnn_len in aftercnn_lens:
        cu_chunk_lens += [window_aftercnn] * (cnn_len // window_aftercnn)
        remainder = cnn_len % window_aftercnn
        if remainder != 0:
            cu_chunk_lens += [remainder]
    cu_seqlens = torch.tensor(cu_chunk_lens, device=aftercnn_lens.device).cumsum(-1, dtype=torch.int32)
    for encoder_layer in encoder.layers:
        hidden_states = encoder_layer(hidden_states, cu_seqlens)[0]
    hidden_states = encoder.proj2(encoder.act(encoder.proj1(encoder.ln_post(hidden_states))))
    return BaseModelOutput(last_hidden_state=hidden_states)
