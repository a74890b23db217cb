"""Writing several files as one change: all of them are replaced, or none is.

``write_all`` first writes every new text to a temporary file beside its target
(a full disk or an unwritable folder fails here, before any target changes),
keeps a hard link (else a copy) of every target that exists, then renames the
temporaries over the targets. If a rename fails (say, the target is a folder),
the targets already replaced get their old contents back and the new ones are
removed, so every file is as it was. Only a crash in the middle of the renames
can leave some files new and some old, each of them whole.
"""
from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from pathlib import Path

from ..files import PartialFiles


def write_all(texts: Mapping[Path, str]) -> None:
    """Write each text (UTF-8) to its path, all or none (see the module docstring); raises the OSError."""
    partials = PartialFiles()
    staged: list[tuple[Path, Path]] = []
    backups: dict[Path, Path] = {}
    replaced: list[Path] = []
    try:
        for path, text in texts.items():
            temporary, handle = partials.create(path)
            staged.append((path, temporary))
            with os.fdopen(handle, "w", encoding="utf-8", newline="\n") as out:
                out.write(text)
        for path, _ in staged:
            if path.is_file():
                backups[path] = _backup(path, partials)
        for path, temporary in staged:
            os.replace(temporary, path)
            replaced.append(path)
    except BaseException:
        for path in reversed(replaced):
            if path in backups:
                os.replace(backups.pop(path), path)
            else:
                path.unlink(missing_ok=True)
        raise
    finally:
        for _, temporary in staged:
            temporary.unlink(missing_ok=True)
        for backup in backups.values():
            backup.unlink(missing_ok=True)


def _backup(path: Path, partials: PartialFiles) -> Path:
    """A second name for ``path``'s current contents, beside it: a hard link, else a copy."""
    backup, handle = partials.create(path.with_name(path.name + ".old"))
    os.close(handle)
    backup.unlink()
    try:
        os.link(path, backup)
    except OSError:
        shutil.copy2(path, backup)
    return backup
