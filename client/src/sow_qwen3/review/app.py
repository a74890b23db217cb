"""Starting a review: the songs to review, the server, the URL and the browser (``sow-qwen3 review``)."""
from __future__ import annotations

import sys
import tempfile
import threading
import webbrowser
from pathlib import Path
from typing import TextIO

from sow_qwen3_contract.quality import SHIPPED_THRESHOLDS

from ..batch import ManifestError
from ..client import Client
from ..errors import ServerUnavailableError
from .catalogue import Catalogue, Entry, folder_entries, single_entry
from .server import ReviewServer, is_loopback


def entries(first: str, second: str | None, out_dir: str | None, language: str | None,
            stream: TextIO) -> list[Entry]:
    """The songs of ``review MANIFEST --out-dir DIR`` (``second`` None) or of ``review SOURCE LRC_OR_JSON``.

    Raises batch.ManifestError (an unusable manifest, or no song with an
    output in DIR) or BadInputError (a timing file not named NAME.lrc / NAME.json).
    """
    if out_dir is None:
        return [single_entry(first, Path(second), language)]
    found, missing = folder_entries(Path(first), Path(out_dir), language or "Chinese")
    if missing:
        print(f"sow-qwen3 review: {len(missing)} songs of the manifest have no output in {out_dir} "
              f"(not aligned yet?): {', '.join(missing[:10])}{' ...' if len(missing) > 10 else ''}", file=stream)
    if not found:
        raise ManifestError(f"no song of {first} has an output (NAME.json or NAME.lrc) in {out_dir}")
    return found


def serve(songs: list[Entry], client: Client, *, host: str, port: int, browser: bool, language: str | None,
          out: TextIO = sys.stdout, messages: TextIO = sys.stderr) -> None:
    """Serve the review page of ``songs`` until interrupted (KeyboardInterrupt propagates after shutdown).

    Reads the server's quality thresholds first; a server that does not
    answer is no error: the review then says so on ``messages`` and judges with
    the thresholds config.pbtxt ships with (``SHIPPED_THRESHOLDS``), each line
    at the aligner's times with the voiced fraction its JSON recorded, and
    re-aligning answers that the server is unavailable. Prints the page's URL
    (with the run's token) as one line on ``out``, opens the browser unless
    ``browser`` is False, and loads every song in the background, worst first.
    """
    try:
        thresholds = client.quality_thresholds()
    except ServerUnavailableError as exc:
        thresholds = SHIPPED_THRESHOLDS
        print(f"sow-qwen3 review: working offline, the aligner server did not answer ({exc}): lines are judged "
              "with the thresholds config.pbtxt ships with; a line at the aligner's times keeps the voiced "
              "fraction its JSON recorded, others are not measured; re-align needs the server", file=messages,
              flush=True)
    with tempfile.TemporaryDirectory(prefix="sow-qwen3-review-") as scratch:
        catalogue = Catalogue(songs, client, thresholds, Path(scratch), language or "Chinese")
        server = ReviewServer(catalogue, host, port)
        try:
            if not is_loopback(host):
                print(f"sow-qwen3 review: listening on {host}, not only this machine: anyone who has the URL "
                      "with its token can change these files", file=messages)
            print(server.url, file=out, flush=True)
            print(f"sow-qwen3 review: {len(songs)} songs; open the URL above (Ctrl-C to stop)", file=messages,
                  flush=True)
            threading.Thread(target=catalogue.load_all, name="review-load", daemon=True).start()
            if browser:
                webbrowser.open(server.url)
            server.serve_forever()
        finally:
            server.server_close()

