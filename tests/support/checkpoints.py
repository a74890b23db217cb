"""Broken copies of the tiny checkpoint, for loading and failure tests."""
from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path


def broken_copy(tiny_model_dir: Path, tmp_path: Path, breakage: Callable[[Path], object]) -> Path:
    """A copy of ``tiny_model_dir`` under ``tmp_path`` with ``breakage`` applied to it."""
    target = tmp_path / "model"
    shutil.copytree(tiny_model_dir, target)
    breakage(target)
    return target


def rewrite_json(path: Path, change: Callable[[dict], object]) -> None:
    """Load the JSON file at ``path``, let ``change`` edit it in place, write it back."""
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def fails_inside_inference(directory: Path) -> None:
    """Make the feature extractor disagree with the encoder: the model loads, then every request fails (500)."""
    rewrite_json(directory / "preprocessor_config.json", lambda config: config.update(feature_size=80))
