"""Fixtures the image tests share."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def readable_checkpoint(tiny_model_dir: Path, tmp_path_factory) -> Path:
    """The tiny checkpoint in a folder of its own, as make_tiny_model.py writes it (mode from the umask), which
    the image's user can read: tiny_model_dir's own folder is private, as pytest makes its temporary folders."""
    target = tmp_path_factory.mktemp("image-model") / "checkpoint"
    target.mkdir()
    for file in tiny_model_dir.iterdir():
        shutil.copy(file, target / file.name)  # copy keeps the modes: what uid 10001 can read is what the script wrote
    return target
