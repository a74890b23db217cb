"""Names on the wire: the sample rate, the two Triton models and their tensors.

config.pbtxt of each model declares the same names with their types and
shapes (tests/server/test_server_contract.py checks that they agree).
"""
from __future__ import annotations

SAMPLE_RATE = 16000  # every AUDIO tensor: mono float32 samples in [-1, 1] at this rate
AUDIO_BYTES_PER_SECOND = SAMPLE_RATE * 4  # float32 samples on the wire

ALIGNER_MODEL = "qwen3_aligner"
VAD_MODEL = "silero_vad"

# qwen3_aligner's inputs: AUDIO FP32 [1, samples], LYRICS BYTES [1, 1], LANGUAGE BYTES [1, 1] (optional).
AUDIO, LYRICS, LANGUAGE = "AUDIO", "LYRICS", "LANGUAGE"

# What a client needs for the timed lines, their evidence and the song's verdict.
LINE_OUTPUTS = (
    "LINE_TEXT", "LINE_START", "LINE_END", "LANGUAGE_NAME", "SKIPPED_TEXT", "SKIPPED_LINE",
    "LINE_CONFIDENCE", "LINE_VOICED", "LINE_FLAGS", "SONG_VERDICT", "SONG_VOICED", "LINE_PASS",
)
# The aligned units (CJK characters or words) and their evidence.
UNIT_OUTPUTS = ("UNIT_TEXT", "UNIT_START", "UNIT_END", "UNIT_LINE", "UNIT_CONFIDENCE", "UNIT_REPAIRED")
# The voiced segments the alignment was judged against (empty when voice activity was not measured).
VOICED_OUTPUTS = ("VOICED_START", "VOICED_END")
ALIGNER_OUTPUTS = LINE_OUTPUTS + UNIT_OUTPUTS + VOICED_OUTPUTS

# silero_vad: AUDIO in; voiced segments in seconds and one speech probability per frame out.
VAD_OUTPUTS = ("SEGMENT_START", "SEGMENT_END", "FRAME_PROBABILITY")
VAD_FRAME_SAMPLES = 512  # FRAME_PROBABILITY's step: 32 ms at SAMPLE_RATE

# UNIT_REPAIRED bits
START_REPAIRED = 1  # the monotonic repair changed the unit's start
END_REPAIRED = 2  # the monotonic repair changed the unit's end
