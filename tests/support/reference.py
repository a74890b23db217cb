"""What stock in-process qwen-asr answers, in the server's terms (written independently of the server)."""
from __future__ import annotations

import numpy as np

from sow_qwen3_contract.tensors import SAMPLE_RATE


def expected_lines(aligner, audio: np.ndarray, lyrics: str, language: str) -> tuple[list, list, list]:
    """Stock ``aligner.align`` on ``audio``, mapped to the non-blank lyric lines and clamped to the clip."""
    lines = [line.strip() for line in lyrics.splitlines() if line.strip()]
    items = aligner.align((audio, SAMPLE_RATE), lyrics, language)[0]
    counts = [len(aligner.aligner_processor.encode_timestamp(line, language)[0]) for line in lines]
    assert sum(counts) == len(items)
    duration = len(audio) / SAMPLE_RATE
    starts, ends, cursor, previous_end = [], [], 0, 0.0
    for count in counts:
        if count:
            start = min(max(items[cursor].start_time, 0.0), duration)
            end = min(max(items[cursor + count - 1].end_time, 0.0), duration)
        else:
            start = end = previous_end
        starts.append(round(start, 3))
        ends.append(round(end, 3))
        cursor += count
        previous_end = end
    return lines, starts, ends
