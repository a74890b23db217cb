"""What a Qwen3-ForcedAligner model directory must hold, checked without torch (standard library only).

One checker for every reader of a model directory: the server's model
(``sow_aligner.engine.check_model_dir``, before it loads the weights) and
``download-model --verify-only`` (``sow_qwen3_server.download_model.verify``).
Each wraps the problem string in its own exception type. The weights are
judged by their safetensors headers alone (no weight is read):

* the directory exists and is a directory;
* it holds ``REQUIRED_FILES``, the weights (``model.safetensors`` or a
  sharded ``model.safetensors.index.json``) and a tokenizer
  (``tokenizer.json``, or ``vocab.json`` + ``merges.txt``);
* config.json is JSON whose ``thinker_config.model_type`` names a forced aligner;
* the weights' headers are readable and hold the timestamp head
  ``HEAD_TENSOR`` with config.json's ``classify_num`` classes.

Whether this process may read the directory at all is asked first, by
``sow_aligner.access.permission_problem``.
"""
from __future__ import annotations

import json
import math
import struct
from pathlib import Path

REQUIRED_FILES = ("config.json", "preprocessor_config.json", "tokenizer_config.json")
WEIGHTS = "model.safetensors"
WEIGHTS_INDEX = "model.safetensors.index.json"
HEAD_TENSOR = "thinker.lm_head.weight"  # the timestamp head: one row per 80 ms class


def weight_files(path: Path) -> list[Path]:
    """The safetensors files of the checkpoint at ``path``: the shards its index names, else ``model.safetensors``."""
    index = path / WEIGHTS_INDEX
    if index.is_file():
        return sorted({path / name for name in json.loads(index.read_text())["weight_map"].values()})
    return [path / WEIGHTS]


def tensor_shapes(path: Path) -> dict[str, list[int]]:
    """Every tensor's shape in the checkpoint at ``path``, from its safetensors headers (no weight is read).

    Raises OSError, ValueError, KeyError or struct.error for a missing or unreadable header.
    """
    shapes: dict[str, list[int]] = {}
    for file in weight_files(path):
        with file.open("rb") as handle:
            (length,) = struct.unpack("<Q", handle.read(8))
            header = json.loads(handle.read(length))
        shapes.update({name: [int(size) for size in entry["shape"]] for name, entry in header.items()
                       if name != "__metadata__"})
    return shapes


def checkpoint_parameters(path: Path) -> int:
    """Number of weights in the checkpoint at ``path`` (``tensor_shapes``' errors)."""
    return parameter_count(tensor_shapes(path))


def parameter_count(shapes: dict[str, list[int]]) -> int:
    """Number of weights in tensors of these shapes."""
    return sum(math.prod(shape) for shape in shapes.values())


def checkpoint_problem(path: Path) -> str | None:
    """What keeps ``path`` from being a Qwen3-ForcedAligner checkpoint (the module's list), or None.

    The message names the path and the problem; the first problem found is the one reported.
    """
    if not path.exists():
        return f"model directory {path} does not exist (mount the weights there or set SOW_QWEN3_MODEL_PATH)"
    if not path.is_dir():
        return f"model path {path} is not a directory"
    missing = [name for name in REQUIRED_FILES if not (path / name).is_file()]
    if not ((path / WEIGHTS).is_file() or (path / WEIGHTS_INDEX).is_file()):
        missing.append(WEIGHTS)
    if not ((path / "tokenizer.json").is_file() or ((path / "vocab.json").is_file() and (path / "merges.txt").is_file())):
        missing.append("tokenizer.json (or vocab.json + merges.txt)")
    if missing:
        return f"model directory {path} is missing {', '.join(missing)}"
    try:
        thinker = json.loads((path / "config.json").read_text())["thinker_config"]
        thinker_type, classes = thinker["model_type"], int(thinker["classify_num"])
    except (ValueError, KeyError, TypeError) as exc:
        return f"model directory {path} has an unreadable config.json: {exc!r}"
    if "forced_aligner" not in str(thinker_type):
        return (f"model directory {path}: config.json thinker_config.model_type is {thinker_type!r}, "
                "not a forced aligner (expected 'qwen3_forced_aligner')")
    try:
        head = tensor_shapes(path).get(HEAD_TENSOR)
    except (OSError, ValueError, KeyError, TypeError, struct.error) as exc:
        return f"could not load Qwen3-ForcedAligner from {path}: unreadable weights header: {exc!r}"
    if head is None:
        return f"model directory {path}: the weights have no timestamp head {HEAD_TENSOR}"
    if head[0] != classes:
        return f"model directory {path}: timestamp head has {head[0]} classes, config says {classes}"
    return None
