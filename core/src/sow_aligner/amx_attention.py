"""Attention on CPUs with AMX: a kernel of our own (``amx_attention.cpp``) for the text decoder's causal attention
and the audio encoder's attention within its windows.

On an Intel Xeon with AMX in bfloat16, PyTorch's flash attention kernel ran
the decoder's causal attention at about 950 GFLOP/s, under half the rate of
its matmuls: its softmax, not its two products, set the pace, and at 300 s
attention was about half of the decoder's time. The kernel here keeps flash
attention's plan (keys in blocks, an online softmax, the masked half never
computed) and does each step more cheaply: both products on AMX tiles, the
softmax in float32 with a polynomial 2^x and a reference that moves only when
a row's scores rise by 2^8 (the .cpp says how), the query, key and value
read where the projections left them (no copies) and the output written as
transformers wants it. On the real-size model's 120 s and 300 s prompts it
ran 1.4-1.6x faster than PyTorch's kernel (docs/benchmarks.md). Its second
mode (``windowed_attention``) attends within consecutive windows of equal
length, without a causal mask: the encoder's 8 s windows, all of a group in
one call (``windows_kernel``, which ``encoder_windows`` runs).

Its output is not bit for bit PyTorch's: both accumulate in float32 and
round the weights and the result to bfloat16, but they block the keys
differently and compute exp differently. Against attention in float64 the
kernel's largest error equals PyTorch's to within one bfloat16 step, in both
modes, and on the real-size model no unit's time moved on the bench songs
(tests/core/test_amx_attention.py; on the informative tiny checkpoint, whose
neighbouring classes tie within bfloat16's rounding, the test holds its
timestamp logits as close to exact attention's as PyTorch's attentions get
them: design.md, "The attention kernel on AMX").

``enable(thinker)`` builds the kernel with the C++ compiler torch.compile
uses (0.5-0.7 s; once per process), checks both modes against PyTorch's
attention on small prompts of the decoder's and the encoder's head shapes,
and makes it the decoder's attention (``AMX_ATTENTION``): a pass over one
prompt with no padding mask runs the kernel; anything else (a batch, a
padding mask, shapes it does not take) runs
``decoder_compile.contiguous_heads_sdpa``. It is a torch custom op, so the
compiled layers call it as one opaque step.
"""
from __future__ import annotations

import ctypes
import logging
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import torch
from transformers import AttentionInterface
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

from .decoder_compile import SDPA, contiguous_heads_sdpa

log = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("amx_attention.cpp")
AMX_ATTENTION = "sow_amx_attention"
FLAGS = ("-O3", "-shared", "-fPIC", "-fopenmp", "-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512dq",
         "-mavx512bf16", "-mamx-tile", "-mamx-bf16", "-mfma")
MAX_HEAD_SIZE = 128
# The load-time check: a prompt of this shape against PyTorch's attention, within this many bfloat16 steps of it.
CHECK_TOKENS = 200
CHECK_STEPS = 2
CHECK_WINDOWS = 2  # the encoder's check: CHECK_TOKENS in this many windows


class KernelUnavailable(RuntimeError):
    """The kernel cannot run here; the message says why."""


_kernel: ctypes._CFuncPtr | None = None  # the built kernel of this process


def cpu_has_amx() -> bool:
    """Whether this CPU has AMX tiles for bfloat16 and AVX-512 bfloat16, and the OS lets this process use the
    tiles (``torch.cpu._init_amx`` asks it)."""
    return bool(torch.cpu._is_amx_tile_supported() and torch.cpu._is_avx512_bf16_supported()
                and torch.cpu._init_amx())


def compiler() -> str:
    """The C++ compiler: $CXX, else g++ (as torch.compile's)."""
    return os.environ.get("CXX") or "g++"


def build() -> ctypes._CFuncPtr:
    """The kernel of this process, built at the first call (into a private temporary directory, removed after
    loading). Raises KernelUnavailable naming the reason: no AMX, no compiler, or the compiler's first error."""
    global _kernel
    if _kernel is not None:
        return _kernel
    if not cpu_has_amx():
        raise KernelUnavailable("this CPU has no AMX for bfloat16 (or the OS does not allow its use)")
    if shutil.which(compiler()) is None:
        raise KernelUnavailable(f"no C++ compiler ({compiler()}) on PATH")
    with tempfile.TemporaryDirectory(prefix="sow-amx-attention-") as folder:
        library = Path(folder) / "amx_attention.so"
        done = subprocess.run([compiler(), *FLAGS, str(SOURCE), "-o", str(library)], capture_output=True, text=True)
        if done.returncode != 0:
            first = next((line for line in done.stderr.splitlines() if "error" in line), done.stderr.strip()[:300])
            raise KernelUnavailable(f"{compiler()} failed to build {SOURCE.name}: {first}")
        function = ctypes.CDLL(str(library)).sow_attention
    function.restype = ctypes.c_int
    function.argtypes = ([ctypes.c_void_p, ctypes.c_long, ctypes.c_long, ctypes.c_long] * 3 + [ctypes.c_void_p] * 3
                         + [ctypes.c_int] * 5 + [ctypes.c_float, ctypes.c_int, ctypes.c_int])
    _kernel = function
    return function


def takes_head_size(size: int) -> bool:
    """Whether the kernel takes heads of ``size``: a multiple of 16, up to MAX_HEAD_SIZE."""
    return size % 16 == 0 and size <= MAX_HEAD_SIZE


def takes(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> bool:
    """Whether the kernel takes these (batch, heads, tokens, head size) tensors: bfloat16 on CPU, one prompt, a
    head size that is a multiple of 16 up to 128, whole groups of query heads per key head."""
    return (query.dtype == key.dtype == value.dtype == torch.bfloat16 and query.device.type == "cpu"
            and query.dim() == 4 and query.shape[0] == key.shape[0] == value.shape[0] == 1
            and query.shape[2] == key.shape[2] == value.shape[2] >= 1
            and query.shape[3] == key.shape[3] == value.shape[3] and takes_head_size(query.shape[3])
            and key.shape[1] == value.shape[1]
            and query.shape[1] % key.shape[1] == 0)


def _rows(tensor: torch.Tensor) -> torch.Tensor:
    """``tensor`` (1, heads, tokens, head size) as the kernel reads it: unit stride along the head size, an even
    stride between tokens; a contiguous copy only when it is not so already."""
    if tensor.stride(3) == 1 and tensor.stride(2) % 2 == 0 and tensor.stride(1) % 2 == 0:
        return tensor
    return tensor.contiguous()


def _run(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, out: torch.Tensor, windows: int,
         window_strides: tuple[int, int, int], scale: float, causal: bool) -> torch.Tensor:
    """``out`` filled by the kernel (build first): ``query``, ``key`` and ``value`` are (heads, tokens, head size)
    views of the first window, each window ``window_strides`` elements after the one before."""
    kernel = build()
    heads, tokens, size = query.shape
    key_heads = key.shape[0]
    padded_tokens, padded_size = -(-tokens // 64) * 64, -(-size // 32) * 32
    keys = torch.empty(windows * key_heads * padded_tokens * padded_size // 2, dtype=torch.int32)
    values = torch.empty(windows * key_heads * padded_tokens * padded_size, dtype=torch.bfloat16)
    failed = kernel(query.data_ptr(), query.stride(0), query.stride(1), window_strides[0],
                    key.data_ptr(), key.stride(0), key.stride(1), window_strides[1],
                    value.data_ptr(), value.stride(0), value.stride(1), window_strides[2],
                    out.data_ptr(), keys.data_ptr(), values.data_ptr(), heads, key_heads, windows, tokens, size,
                    scale, int(causal), torch.get_num_threads())
    if failed == 2:
        raise MemoryError("the AMX attention kernel ran out of memory for its working space")
    if failed:
        raise ValueError(f"the AMX attention kernel does not take query {tuple(query.shape)}, key {tuple(key.shape)}"
                         f" in {windows} windows")
    return out


@torch.library.custom_op("sow_aligner::amx_causal_attention", mutates_args=())
def causal_attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, scale: float) -> torch.Tensor:
    """Causal attention of ``query`` (1, heads, tokens, head size) over ``key`` and ``value`` (1, key heads, tokens,
    head size), softmax of scale x scores; (1, tokens, heads, head size) contiguous, bfloat16. ``build`` first, and
    ``takes`` these tensors."""
    _, heads, tokens, size = query.shape
    query, key, value = _rows(query), _rows(key), _rows(value)
    out = torch.empty(1, tokens, heads, size, dtype=torch.bfloat16)
    return _run(query[0], key[0], value[0], out, 1, (0, 0, 0), scale, causal=True)


@causal_attention.register_fake
def _(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, scale: float) -> torch.Tensor:
    return query.new_empty(query.shape[0], query.shape[2], query.shape[1], query.shape[3])


def takes_windows(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> bool:
    """Whether ``windowed_attention`` takes these (tokens, heads, head size) tensors: bfloat16 on CPU, a head size
    that is a multiple of 16 up to 128, as many heads in each, each head's rows contiguous at even strides."""
    return (query.dtype == key.dtype == value.dtype == torch.bfloat16 and query.device.type == "cpu"
            and query.dim() == key.dim() == value.dim() == 3 and query.shape == key.shape == value.shape
            and takes_head_size(query.shape[2])
            and all(tensor.stride(2) == 1 and tensor.stride(0) % 2 == 0 and tensor.stride(1) % 2 == 0
                    for tensor in (query, key, value)))


def windows_kernel(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, windows: int,
                   scale: float) -> torch.Tensor | None:
    """``encoder_windows.WindowsKernel``: ``windowed_attention`` where it ``takes_windows`` the tensors, else None."""
    return windowed_attention(query, key, value, windows, scale) if takes_windows(query, key, value) else None


def windowed_attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, windows: int,
                       scale: float) -> torch.Tensor:
    """Attention within ``windows`` consecutive windows of equal length, each token over its own window's keys (no
    mask): ``query``, ``key`` and ``value`` are (tokens, heads, head size), read in place (the projections' layout,
    ``takes_windows``); the softmax is of scale x scores. (tokens, heads, head size) contiguous, bfloat16.
    ``build`` first."""
    tokens, heads, size = query.shape
    if windows < 1 or tokens % windows:
        raise ValueError(f"{tokens} tokens do not make {windows} windows of equal length")
    length = tokens // windows
    out = torch.empty(tokens, heads, size, dtype=torch.bfloat16)
    views = [tensor[:length].transpose(0, 1) for tensor in (query, key, value)]
    strides = tuple(length * tensor.stride(0) for tensor in (query, key, value))
    return _run(*views, out, windows, strides, scale, causal=False)


def amx_attention(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                  attention_mask: torch.Tensor | None, dropout: float = 0.0, scaling: float | None = None,
                  **kwargs) -> tuple[torch.Tensor, None]:
    """transformers' attention interface: the kernel for one causal prompt without a mask, else
    ``contiguous_heads_sdpa``; the output (batch, tokens, heads, head size) either way."""
    if (attention_mask is None and dropout == 0.0 and getattr(module, "is_causal", True)
            and kwargs.get("is_causal", True) is not False and kwargs.get("sliding_window") is None
            and takes(query, key, value)):
        return causal_attention(query, key, value, module.scaling if scaling is None else scaling), None
    return contiguous_heads_sdpa(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                 **kwargs)


AttentionInterface.register(AMX_ATTENTION, amx_attention)
AttentionMaskInterface.register(AMX_ATTENTION, sdpa_mask)  # sdpa's masks: none where causal suffices


def check(head_size: int, heads: int, key_heads: int, windows: int = 0) -> None:
    """Raise KernelUnavailable unless the kernel matches PyTorch's attention on a random prompt of this head shape
    (within CHECK_STEPS bfloat16 steps of the largest output): causal over one prompt, or with ``windows`` (and
    as many key heads as heads) within that many windows of the prompt."""
    generator = torch.Generator().manual_seed(0)
    query, key, value = (torch.randn(1, count, CHECK_TOKENS, head_size, generator=generator).bfloat16()
                         for count in (heads, key_heads, key_heads))
    scale = head_size ** -0.5
    if windows:
        per_window = [tensor[0].reshape(count, windows, -1, head_size).transpose(0, 1)
                      for tensor, count in ((query, heads), (key, key_heads), (value, key_heads))]
        theirs = torch.nn.functional.scaled_dot_product_attention(*per_window, scale=scale)
        theirs = theirs.transpose(1, 2).reshape(CHECK_TOKENS, heads, head_size).float()
        mine = windowed_attention(*(tensor[0].transpose(0, 1) for tensor in (query, key, value)), windows,
                                  scale).float()
    else:
        theirs = torch.nn.functional.scaled_dot_product_attention(
            query, key.repeat_interleave(heads // key_heads, 1), value.repeat_interleave(heads // key_heads, 1),
            is_causal=True, scale=scale).transpose(1, 2).float()
        mine = causal_attention(query, key, value, scale).float()
    step = theirs.abs().max().item() * 2.0 ** -8
    worst = (mine - theirs).abs().max().item()
    if not worst <= CHECK_STEPS * step:
        raise KernelUnavailable(f"the kernel's output is {worst:.3g} from PyTorch's attention (allowed "
                                f"{CHECK_STEPS * step:.3g}){f' in {windows} windows' if windows else ''}")


def enable(thinker: torch.nn.Module) -> bool:
    """Make the kernel the attention of ``thinker``'s text decoder (bfloat16 on CPU, sdpa attention) if it builds
    and checks out here, on the decoder's head shape and, in CHECK_WINDOWS windows, the audio encoder's; whether
    it now is. Then ``windows_kernel`` is the encoder's to use (``encoder_windows``). When it cannot, the decoder
    keeps its attention and the log says why."""
    config = thinker.model.config
    if config._attn_implementation == AMX_ATTENTION:
        return True
    if config._attn_implementation != SDPA:
        log.info("attention kernel: PyTorch's %s (the AMX kernel stands in for sdpa only)",
                 config._attn_implementation)
        return False
    audio = thinker.audio_tower.config
    try:
        build()
        check(int(config.head_dim), int(config.num_attention_heads), int(config.num_key_value_heads))
        encoder_heads = int(audio.encoder_attention_heads)
        encoder_head_size = int(audio.d_model) // encoder_heads
        if takes_head_size(encoder_head_size):  # else the encoder runs PyTorch's
            check(encoder_head_size, encoder_heads, encoder_heads, windows=CHECK_WINDOWS)
    except (KernelUnavailable, OSError, ValueError) as exc:
        log.info("attention kernel: PyTorch's (the AMX kernel is not used: %s)", exc)
        return False
    config._attn_implementation = AMX_ATTENTION
    return True
