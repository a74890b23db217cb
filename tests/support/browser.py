"""The review page's test helpers: a review folder of the synthetic song, the real ``sow-qwen3 review`` process,
and headless Chromium from Debian driven by Selenium through /usr/bin/chromedriver (nothing downloaded).
"""
from __future__ import annotations

import json
import os
import queue
import shutil
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from sow_qwen3.formats import to_json, to_json_data, to_lrc
from sow_qwen3.timings import parse_lrc
from sow_qwen3_contract.response import Line

DATA = Path(__file__).resolve().parents[1] / "data"
SONG = DATA / "synthetic_song"
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
SOW_QWEN3 = Path(sys.executable).parent / "sow-qwen3"
# The first chorus (lines 4 and 5) moved into the instrumental gap after the first verse: both unvoiced.
MOVED = {4: (16.5, 18.0), 5: (19.0, 21.0)}


def truth_lines(moved: dict[int, tuple[float, float]] = MOVED) -> list[Line]:
    """The synthetic song's true lines (ends from its .truth.json), with the lines of ``moved`` put elsewhere."""
    truth = json.loads(SONG.with_suffix(".truth.json").read_text(encoding="utf-8"))["lines"]
    lines = [Line(line["text"], line["start"], line["end"]) for line in truth]
    for index, (start, end) in moved.items():
        lines[index] = Line(lines[index].text, start, end)
    return lines


def review_folder(root: Path) -> tuple[Path, Path]:
    """A manifest and an align-batch folder with two songs of the synthetic audio: ``song`` as JSON and
    ``moved`` as LRC, each with the first chorus moved into a gap (two unvoiced lines). Returns both paths."""
    root.mkdir(parents=True, exist_ok=True)
    for suffix in (".ogg", ".txt"):
        shutil.copyfile(SONG.with_suffix(suffix), root / f"synthetic_song{suffix}")
    manifest = root / "catalogue.csv"
    manifest.write_text("source,lyrics,language,name\nsynthetic_song.ogg,synthetic_song.txt,Chinese,song\n"
                        "synthetic_song.ogg,synthetic_song.txt,Chinese,moved\n", encoding="utf-8")
    out = root / "out"
    out.mkdir()
    lines = truth_lines()
    duration = json.loads(SONG.with_suffix(".truth.json").read_text(encoding="utf-8"))["duration_seconds"]
    (out / "song.json").write_text(to_json(to_json_data(lines, duration, "Chinese")), encoding="utf-8")
    (out / "moved.lrc").write_text(to_lrc(lines, duration), encoding="utf-8")
    return manifest, out


def lrc_starts(path: Path) -> list[float]:
    return [line.start for line in parse_lrc(path.read_text(encoding="utf-8"))]


@dataclass
class ReviewProcess:
    """A running ``sow-qwen3 review``: its process, the printed URL, and what it wrote to stderr."""

    process: subprocess.Popen
    url: str
    stderr: list[str] = field(default_factory=list)

    @property
    def token(self) -> str:
        return urllib.parse.parse_qs(urllib.parse.urlsplit(self.url).query)["token"][0]

    @property
    def base(self) -> str:
        parts = urllib.parse.urlsplit(self.url)
        return f"{parts.scheme}://{parts.netloc}"

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


def start_review(args: list[str], triton_url: str, api_key: str | None = None, timeout: float = 60) -> ReviewProcess:
    """Start ``sow-qwen3 review ARGS --no-browser --port 0`` against ``triton_url`` and return once it printed its URL.

    Raises RuntimeError with its stderr if it exits first or prints nothing within ``timeout`` seconds.
    """
    command = [str(SOW_QWEN3), "review", *args, "--no-browser", "--port", "0", "--url", triton_url]
    if api_key:
        command += ["--api-key", api_key]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: queue.SimpleQueue[str] = queue.SimpleQueue()
    review = ReviewProcess(process, "")
    threading.Thread(target=lambda: [lines.put(line) for line in process.stdout], daemon=True).start()
    threading.Thread(target=lambda: [review.stderr.append(line) for line in process.stderr], daemon=True).start()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            review.url = lines.get(timeout=0.5).strip()
            return review
        except queue.Empty:
            if process.poll() is not None:
                break
    process.kill()
    process.wait()
    raise RuntimeError(f"sow-qwen3 review printed no URL (exit {process.returncode}):\n{''.join(review.stderr)}")


def request(review: ReviewProcess, method: str, path: str, body: object = None, *, token: str | None = "",
            headers: dict[str, str] | None = None) -> tuple[int, object]:
    """``method path`` against the review server; ``token`` "" uses the run's token, None sends none.

    Returns the status and the decoded JSON body (bytes for non-JSON answers).
    """
    token = review.token if token == "" else token
    url = review.base + path + (("&" if "?" in path else "?") + f"token={token}" if token else "")
    data = None if body is None else json.dumps(body).encode()
    sent = {"Content-Type": "application/json", **(headers or {})}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=data, method=method, headers=sent),
                                    timeout=120) as response:
            status, raw, kind = response.status, response.read(), response.headers.get("Content-Type", "")
    except urllib.error.HTTPError as exc:
        status, raw, kind = exc.code, exc.read(), exc.headers.get("Content-Type", "")
    return status, json.loads(raw) if kind.startswith("application/json") else raw


def chromium():
    """Headless Chromium through Debian's chromedriver; Selenium Manager never runs (SE_OFFLINE, a given Service)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    os.environ["SE_OFFLINE"] = "true"
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--autoplay-policy=no-user-gesture-required", "--window-size=1440,900", "--lang=en-US"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(options=options, service=Service(executable_path=str(CHROMEDRIVER)))
