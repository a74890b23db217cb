"""Whether this process may read a model directory: the first thing an operator needs to know when a load fails."""
from __future__ import annotations

import os
from pathlib import Path


def permission_problem(path: Path) -> str | None:
    """The message "permission denied: P is not readable by uid N" for what this process cannot read of ``path``.

    P is ``path`` itself when a folder on the way may not be entered or the
    folder may not be listed, else the first unreadable file in it. None when
    everything can be read, and when ``path`` is missing (that is another problem).
    """
    try:
        path.stat()
    except PermissionError:
        return _denied(path)
    except OSError:
        return None
    if path.is_dir():
        if not os.access(path, os.R_OK | os.X_OK):
            return _denied(path)
        for file in sorted(path.iterdir()):
            if file.is_file() and not os.access(file, os.R_OK):
                return _denied(file)
    return None


def _denied(path: Path) -> str:
    return f"permission denied: {path} is not readable by uid {os.getuid()}"
