"""Giving the modules of one loaded model a ``forward`` of our own, after a check that it holds here.

The CPU kernels that replace a step of qwen-asr's model (``conv_front_end``,
``encoder_linears``) do it the same way: find the audio encoders, check on
random input that the replacement agrees with qwen-asr's step on this
machine, then set the replacement as an instance attribute of each module
(qwen-asr's classes and other model instances are untouched), marked by a
flag so that doing it twice changes nothing.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from types import MethodType

from qwen_asr.core.transformers_backend.modeling_qwen3_asr import Qwen3ASRAudioEncoder
from torch import nn

log = logging.getLogger(__name__)


def audio_encoders(model: nn.Module) -> list[Qwen3ASRAudioEncoder]:
    """The ``Qwen3ASRAudioEncoder`` modules inside ``model``; ValueError when there is none."""
    encoders = [module for module in model.modules() if isinstance(module, Qwen3ASRAudioEncoder)]
    if not encoders:
        raise ValueError(f"{type(model).__name__} holds no Qwen3ASRAudioEncoder")
    return encoders


def give_forward(modules: Iterable[nn.Module], forward: Callable, flag: str, check: Callable[[], None],
                 refusal: str) -> bool:
    """Bind ``forward`` as the ``forward`` of each of ``modules`` not flagged ``flag`` yet, once ``check()`` has
    returned; whether they now have it. When ``check`` raises, logs ``refusal`` with the reason as a warning
    and changes nothing."""
    try:
        check()
    except Exception as exc:  # noqa: BLE001 - without the replacement, qwen-asr's own step serves
        log.warning("%s: %s: %s", refusal, type(exc).__name__, exc)
        return False
    for module in modules:
        if not getattr(module, flag, False):
            module.forward = MethodType(forward, module)
            setattr(module, flag, True)
    return True
