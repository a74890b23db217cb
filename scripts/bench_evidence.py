#!/usr/bin/env python3
"""What the trust evidence costs: voice activity (silero_vad through BLS) and confidences, on a 300 s song.

    bench_evidence.py [--repeats 3] [--model-dir DIR] [--output docs/benchmarks.md | --no-write]

Two servers (scripts/serve.py) on the same real-size random-weight checkpoint
as bench.py (bfloat16), both up for the whole run: one as shipped, one with
SOW_QWEN3_VAD_MODEL=none (no VAD call; confidences, flags and verdict are
still computed). Each repeat sends bench.py's 300 s song (500 characters)
over HTTP to both, in alternating order, so drift on a shared machine hits
both alike. Reported: the median wall time of each, the median difference
and its ratio to the alignment without the VAD; the silero_vad request alone
on the same audio; and, in-process, the softmax over the timestamp slots that
the confidences add to the forward pass (the rest of the evidence is plain
Python on a few hundred numbers). The report is printed and written into
the "evidence" section of docs/benchmarks.md.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from bench import DEFAULT_MODEL_DIR, DEFAULT_OUTPUT, LANGUAGE, MODEL, SONGS, WARM_UP, ensure_model, log, \
    machine_facts, song_data, write_report
from sow_qwen3.client import infer_input, request_inputs

SONG = SONGS["300"]
CLASSES = 5000  # the real timestamp head


def align_seconds(client, audio: np.ndarray, lyrics: str) -> float:
    import tritonclient.http as httpclient

    started = time.perf_counter()
    client.infer(MODEL, request_inputs(httpclient, audio, lyrics, LANGUAGE))
    return time.perf_counter() - started


def vad_seconds(client, audio: np.ndarray) -> float:
    import tritonclient.http as httpclient

    started = time.perf_counter()
    client.infer("silero_vad", [infer_input(httpclient, "AUDIO", audio.reshape(1, -1), "FP32")])
    return time.perf_counter() - started


def softmax_seconds(slots: int, repeats: int = 20) -> float:
    """Median seconds of the confidence computation on ``slots`` x CLASSES bfloat16 logits."""
    import torch

    logits = torch.randn(slots, CLASSES).to(torch.bfloat16)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        classes = logits.argmax(dim=-1)
        torch.softmax(logits.float(), dim=-1).gather(1, classes[:, None])
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--model-dir", type=Path, default=DEFAULT_MODEL_DIR)
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    import tritonclient.http as httpclient
    from server_process import start_server

    ensure_model(args.model_dir)
    audio, lyrics = song_data(SONG)
    warm_audio, warm_lyrics = song_data(WARM_UP)
    logs = Path(tempfile.mkdtemp(prefix="bench-evidence-"))
    servers, clients = {}, {}
    try:
        for name, env in (("with VAD", {}), ("without VAD", {"SOW_QWEN3_VAD_MODEL": "none"})):
            log(f"starting the server {name}")
            servers[name] = start_server(args.model_dir, logs, env={"SOW_QWEN3_DTYPE": "bfloat16", **env}, timeout=600)
            clients[name] = httpclient.InferenceServerClient(servers[name].http_url, connection_timeout=900,
                                                             network_timeout=900)
            align_seconds(clients[name], warm_audio, warm_lyrics)
        times = {name: [] for name in servers}
        vad = [vad_seconds(clients["with VAD"], audio)]
        for repeat in range(args.repeats):
            order = list(servers) if repeat % 2 == 0 else list(reversed(servers))
            for name in order:
                times[name].append(align_seconds(clients[name], audio, lyrics))
                log(f"repeat {repeat + 1}: {name}: {times[name][-1]:.2f} s")
            vad.append(vad_seconds(clients["with VAD"], audio))
    finally:
        for client in clients.values():
            client.close()
        for server in servers.values():
            server.stop()
    units = SONG.chars  # one unit per CJK character
    softmax = softmax_seconds(2 * units)
    with_vad, without = statistics.median(times["with VAD"]), statistics.median(times["without VAD"])
    pairs = [a - b for a, b in zip(times["with VAD"], times["without VAD"])]
    vad_alone = statistics.median(vad)
    section = "\n".join([
        "## What the trust evidence costs (300 s song)",
        "",
        f"Measured {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC with `.venv/bin/python scripts/bench_evidence.py "
        f"--repeats {args.repeats}` on {machine_facts()['machine']}. The machine is shared with other "
        "engineers' test runs, so absolute times vary by up to 50 %; the two servers are measured in "
        "alternation to share the drift. Model: the real-size random-weight checkpoint of bench.py, bfloat16, "
        f"one instance; song: {SONG.seconds} s, {SONG.chars} characters ({2 * units} timestamp slots).",
        "",
        "| what | seconds (median) | each repeat |",
        "|---|---|---|",
        f"| alignment, as shipped (VAD through BLS, confidences, flags, verdict) | {with_vad:.2f} | "
        f"{', '.join(f'{t:.2f}' for t in times['with VAD'])} |",
        f"| alignment with SOW_QWEN3_VAD_MODEL=none (confidences, flags, verdict; no VAD) | {without:.2f} | "
        f"{', '.join(f'{t:.2f}' for t in times['without VAD'])} |",
        f"| difference, per repeat | {statistics.median(pairs):+.2f} | {', '.join(f'{d:+.2f}' for d in pairs)} |",
        f"| silero_vad alone on the same audio (HTTP) | {vad_alone:.3f} | {', '.join(f'{t:.3f}' for t in vad)} |",
        f"| confidences: softmax over {2 * units} x {CLASSES} logits, in-process | {softmax:.4f} | median of 20 |",
        "",
        f"VAD cost: **{vad_alone / without:.1%}** of the alignment time measured alone "
        f"({vad_alone:.2f} s / {without:.2f} s), {statistics.median(pairs) / without:+.1%} as the median "
        f"difference between the servers (noisier: it includes run-to-run drift). Confidence cost: "
        f"**{softmax / without:.2%}**. Target: at most 5 % of the alignment time.",
        "",
    ])
    print(section)
    if not args.no_write:
        write_report(args.output, "evidence", section)
        log(f"wrote the evidence section of {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
