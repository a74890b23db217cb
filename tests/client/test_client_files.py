"""Writing outputs: all or nothing, with the umask's mode, and no temporary file left by an interrupted run."""
from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from sow_qwen3.files import PartialFiles, WriteAbandoned, write_atomically


def test_remove_all_deletes_writes_in_progress_and_refuses_new_ones(tmp_path: Path):
    partials = PartialFiles()
    temporary, handle = partials.create(tmp_path / "song.lrc")
    os.close(handle)
    assert temporary.parent == tmp_path and temporary.name.startswith(".song.lrc.") and temporary.suffix == ".partial"
    partials.remove_all()
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(WriteAbandoned, match="the run was interrupted"):
        write_atomically(tmp_path / "next.lrc", "[00:01.00]line\n", partials)
    assert list(tmp_path.iterdir()) == []


def test_a_finished_write_replaces_the_file_and_leaves_nothing_to_remove(tmp_path: Path):
    target = tmp_path / "song.lrc"
    target.write_text("old", encoding="utf-8")
    partials = PartialFiles()
    write_atomically(target, "new", partials)
    partials.remove_all()
    assert target.read_text(encoding="utf-8") == "new" and list(tmp_path.iterdir()) == [target]


def test_a_new_file_gets_the_umasks_mode(tmp_path: Path):
    previous = os.umask(0o037)
    try:
        write_atomically(tmp_path / "song.json", "{}\n")
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "song.json").stat().st_mode) == 0o640
