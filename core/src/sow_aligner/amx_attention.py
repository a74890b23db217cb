"""The text decoder's causal attention on CPUs with AMX: a kernel of our own (``amx_attention.cpp``).

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
ran 1.4-1.6x faster than PyTorch's kernel (docs/benchmarks.md).

Its output is not bit for bit PyTorch's: both accumulate in float32 and
round the weights and the result to bfloat16, but they block the keys
differently and compute exp differently. Against attention in float64 the
kernel's largest error equals PyTorch's to within one bfloat16 step, and on
the real-size model no unit's time moved on the bench songs
(tests/core/test_amx_attention.py; on the informative tiny checkpoint, whose
neighbouring classes tie within bfloat16's rounding, the test holds its
timestamp logits as close to exact attention's as PyTorch's attentions get
them: design.md, "The decoder's attention on AMX").

``enable(thinker)`` builds the kernel with the C++ compiler torch.compile
uses (0.5-0.7 s; once per process), checks it against PyTorch's attention
on a small prompt, and makes it the decoder's attention
(``AMX_ATTENTION``): a pass over one prompt with no padding mask runs the
kernel; anything else (a batch, a padding mask, shapes it does not take)
runs ``decoder_compile.contiguous_heads_sdpa``. It is a torch custom op, so
the compiled layers call it as one opaque step.
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
        function = ctypes.CDLL(str(library)).sow_causal_attention
    function.restype = ctypes.c_int
    function.argtypes = ([ctypes.c_void_p, ctypes.c_long, ctypes.c_long] * 3 + [ctypes.c_void_p] * 3
                         + [ctypes.c_int] * 4 + [ctypes.c_float, ctypes.c_int])
    _kernel = function
    return function


def takes(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> bool:
    """Whether the kernel takes these (batch, heads, tokens, head size) tensors: bfloat16 on CPU, one prompt, a
    head size that is a multiple of 16 up to 128, whole groups of query heads per key head."""
    return (query.dtype == key.dtype == value.dtype == torch.bfloat16 and query.device.type == "cpu"
            and query.dim() == 4 and query.shape[0] == key.shape[0] == value.shape[0] == 1
            and query.shape[2] == key.shape[2] == value.shape[2] >= 1
            and query.shape[3] == key.shape[3] == value.shape[3] and query.shape[3] % 16 == 0
            and query.shape[3] <= MAX_HEAD_SIZE and key.shape[1] == value.shape[1]
            and query.shape[1] % key.shape[1] == 0)


def _rows(tensor: torch.Tensor) -> torch.Tensor:
    """``tensor`` (1, heads, tokens, head size) as the kernel reads it: unit stride along the head size, an even
    stride between tokens; a contiguous copy only when it is not so already."""
    if tensor.stride(3) == 1 and tensor.stride(2) % 2 == 0 and tensor.stride(1) % 2 == 0:
        return tensor
    return tensor.contiguous()


@torch.library.custom_op("sow_aligner::amx_causal_attention", mutates_args=())
def causal_attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, scale: float) -> torch.Tensor:
    """Causal attention of ``query`` (1, heads, tokens, head size) over ``key`` and ``value`` (1, key heads, tokens,
    head size), softmax of scale x scores; (1, tokens, heads, head size) contiguous, bfloat16. ``build`` first, and
    ``takes`` these tensors."""
    kernel = build()
    _, heads, tokens, size = query.shape
    key_heads = key.shape[1]
    padded_tokens, padded_size = -(-tokens // 64) * 64, -(-size // 32) * 32
    query, key, value = _rows(query), _rows(key), _rows(value)
    out = torch.empty(1, tokens, heads, size, dtype=torch.bfloat16)
    keys = torch.empty(key_heads * padded_tokens * padded_size // 2, dtype=torch.int32)
    values = torch.empty(key_heads * padded_tokens * padded_size, dtype=torch.bfloat16)
    failed = kernel(query.data_ptr(), query.stride(1), query.stride(2), key.data_ptr(), key.stride(1), key.stride(2),
                    value.data_ptr(), value.stride(1), value.stride(2), out.data_ptr(), keys.data_ptr(),
                    values.data_ptr(), heads, key_heads, tokens, size, scale, torch.get_num_threads())
    if failed == 2:
        raise MemoryError("the AMX attention kernel ran out of memory for its working space")
    if failed:
        raise ValueError(f"the AMX attention kernel does not take query {tuple(query.shape)}, key {tuple(key.shape)}")
    return out


@causal_attention.register_fake
def _(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, scale: float) -> torch.Tensor:
    return query.new_empty(query.shape[0], query.shape[2], query.shape[1], query.shape[3])


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


def check(head_size: int, heads: int, key_heads: int) -> None:
    """Raise KernelUnavailable unless the kernel matches PyTorch's attention on a random prompt of this model's
    head shape (within CHECK_STEPS bfloat16 steps of the largest output)."""
    generator = torch.Generator().manual_seed(0)
    query, key, value = (torch.randn(1, count, CHECK_TOKENS, head_size, generator=generator).bfloat16()
                         for count in (heads, key_heads, key_heads))
    scale = head_size ** -0.5
    theirs = torch.nn.functional.scaled_dot_product_attention(
        query, key.repeat_interleave(heads // key_heads, 1), value.repeat_interleave(heads // key_heads, 1),
        is_causal=True, scale=scale).transpose(1, 2).float()
    mine = causal_attention(query, key, value, scale).float()
    step = theirs.abs().max().item() * 2.0 ** -8
    worst = (mine - theirs).abs().max().item()
    if not worst <= CHECK_STEPS * step:
        raise KernelUnavailable(f"the kernel's output is {worst:.3g} from PyTorch's attention (allowed "
                                f"{CHECK_STEPS * step:.3g})")


def enable(thinker: torch.nn.Module) -> bool:
    """Make the kernel the attention of ``thinker``'s text decoder (bfloat16 on CPU, sdpa attention) if it builds
    and checks out here; whether it now is. When it cannot, the decoder keeps its attention and the log says why."""
    config = thinker.model.config
    if config._attn_implementation == AMX_ATTENTION:
        return True
    if config._attn_implementation != SDPA:
        log.info("decoder attention: %s (the AMX kernel stands in for sdpa only)", config._attn_implementation)
        return False
    try:
        build()
        check(int(config.head_dim), int(config.num_attention_heads), int(config.num_key_value_heads))
    except (KernelUnavailable, OSError, ValueError) as exc:
        log.info("decoder attention: PyTorch's (the AMX kernel is not used: %s)", exc)
        return False
    config._attn_implementation = AMX_ATTENTION
    return True

