"""Audio duration from a file's headers, read in small ranges, before any full download.

``header_duration`` looks only at the bytes a format needs:

- WAV: the RIFF ``fmt `` and ``data`` chunk headers (data bytes / byte rate);
- FLAC: STREAMINFO's total samples and sample rate;
- MP3: the first frame's Xing/Info (less the LAME tag's encoder delay and
  padding) or VBRI frame count; without one, an estimate (the audio bytes
  over the mean frame size) when the frames of the first block and of a
  block in the middle all share one bit rate; else (a variable bit rate) a
  lower bound: the frames counted in the blocks read, plus the bytes between
  them taken as frames of the highest bit rate (``_mp3_least``);
- Ogg Vorbis / Opus: the sample rate from the first page and the granule
  position of the last page, read from the end of the object.

Reads go through ``RangeReader``, which fetches aligned blocks and counts the
bytes it fetched, so callers can report what the check cost.
"""
from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import BinaryIO

BLOCK_BYTES = 16 * 1024
OGG_TAIL_BYTES = 64 * 1024  # an Ogg page is at most 65307 bytes: the last page header is in here
ESTIMATE_MARGIN = 1.05  # an estimated duration counts as too long only when it is 5 % over


@dataclass(frozen=True)
class HeaderDuration:
    """A duration read from headers; ``exact`` is False for an MP3 estimated without a frame count.

    ``at_least`` marks a lower bound (a variable-bit-rate MP3 without a frame
    count): the audio lasts ``seconds`` or longer, never less.
    """

    seconds: float
    format: str
    exact: bool = True
    at_least: bool = False

    def longer_than(self, limit: float) -> bool:
        """Whether this says the audio is past ``limit`` seconds: at all when exact or a lower bound,
        by ESTIMATE_MARGIN when estimated."""
        return self.seconds > limit * (1 if self.exact or self.at_least else ESTIMATE_MARGIN)

    def describe(self) -> str:
        """How the duration was found, for a refusal's message."""
        if self.at_least:
            return f"at least {self.seconds:.1f} s long (a variable-bit-rate {self.format} without a frame count)"
        return f"{self.seconds:.1f} s long" + ("" if self.exact else f" (estimated from its {self.format} frames)")


class RangeReader:
    """Reads byte ranges of an object of ``size`` bytes through ``fetch(start, end_inclusive)``.

    Fetches whole aligned blocks and keeps them, so many small reads near each
    other cost one request; ``fetched`` counts the bytes actually fetched.
    """

    def __init__(self, fetch: Callable[[int, int], bytes], size: int, block: int = BLOCK_BYTES) -> None:
        self._fetch = fetch
        self.size = size
        self.block = block
        self.fetched = 0
        self._blocks: dict[int, bytes] = {}

    def read(self, offset: int, length: int) -> bytes:
        """Up to ``length`` bytes at ``offset`` (fewer at the end of the object)."""
        end = min(offset + length, self.size)
        if offset >= end:
            return b""
        first, last = offset // self.block, (end - 1) // self.block
        missing = [index for index in range(first, last + 1) if index not in self._blocks]
        if missing:
            start, stop = missing[0] * self.block, min((missing[-1] + 1) * self.block, self.size)
            data = self._fetch(start, stop - 1)
            self.fetched += len(data)
            for index in range(missing[0], missing[-1] + 1):
                begin = index * self.block - start
                self._blocks[index] = data[begin:begin + self.block]
        joined = b"".join(self._blocks[index] for index in range(first, last + 1))
        return joined[offset - first * self.block:end - first * self.block]

    def tail(self, length: int) -> tuple[int, bytes]:
        """The last ``length`` bytes (fewer for a smaller object) and their offset."""
        start = max(0, self.size - length)
        return start, self.read(start, self.size - start)


def local_reader(file: BinaryIO, size: int) -> RangeReader:
    """A RangeReader over an open local file of ``size`` bytes."""
    def fetch(start: int, end: int) -> bytes:
        file.seek(start)
        return file.read(end - start + 1)

    return RangeReader(fetch, size)


def header_duration(reader: RangeReader) -> HeaderDuration | None:
    """The duration the headers state, or None when the format or the file does not say."""
    head = reader.read(0, 12)
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return _wav(reader)
    if head[:4] == b"OggS":
        return _ogg(reader)
    audio_start = _id3v2_end(head)
    marker = reader.read(audio_start, 4)
    if marker == b"fLaC":
        return _flac(reader, audio_start)
    return _mp3(reader, audio_start)


def _wav(reader: RangeReader) -> HeaderDuration | None:
    offset, byte_rate = 12, 0
    while offset + 8 <= reader.size:
        chunk = reader.read(offset, 8)
        if len(chunk) < 8:
            return None
        name, size = chunk[:4], struct.unpack("<I", chunk[4:])[0]
        if name == b"fmt ":
            fmt = reader.read(offset + 8, 16)
            if len(fmt) < 16:
                return None
            byte_rate = struct.unpack("<I", fmt[8:12])[0]
        elif name == b"data":
            if not byte_rate:
                return None
            if size in (0, 0xFFFFFFFF) or offset + 8 + size > reader.size:  # streamed or truncated header
                size = reader.size - offset - 8
            return HeaderDuration(size / byte_rate, "wav")
        offset += 8 + size + (size & 1)
    return None


def _flac(reader: RangeReader, start: int) -> HeaderDuration | None:
    block = reader.read(start + 4, 4 + 34)
    if len(block) < 38 or block[0] & 0x7F != 0:  # STREAMINFO must come first
        return None
    bits = int.from_bytes(block[4 + 10:4 + 18], "big")
    rate = bits >> 44
    samples = bits & ((1 << 36) - 1)
    if not rate or not samples:
        return None
    return HeaderDuration(samples / rate, "flac")


def _id3v2_end(head: bytes) -> int:
    """Where the audio starts after an ID3v2 tag (0 without one)."""
    if len(head) < 10 or head[:3] != b"ID3":
        return 0
    size = 0
    for byte in head[6:10]:
        size = (size << 7) | (byte & 0x7F)
    footer = 10 if head[5] & 0x10 else 0
    return 10 + size + footer


MP3_BITRATES = {  # kbit/s by bitrate index, layer III
    1: (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320),
    2: (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
}
MP3_RATES = {3: (44100, 48000, 32000), 2: (22050, 24000, 16000), 0: (11025, 12000, 8000)}
MP3_SYNC_SEARCH = 4096  # bytes after the ID3 tag in which the first frame must start
MP3_CHAIN = 3  # consecutive frames that show a sync found mid-stream is a real frame


@dataclass(frozen=True)
class _Mp3Frame:
    offset: int
    version: int  # 3 = MPEG-1, 2 = MPEG-2, 0 = MPEG-2.5
    bitrate: int  # bit/s
    rate: int
    mono: bool
    length: int

    @property
    def samples(self) -> int:
        return 1152 if self.version == 3 else 576


def _mp3_frame(data: bytes, at: int, offset: int) -> _Mp3Frame | None:
    if at + 4 > len(data) or data[at] != 0xFF or data[at + 1] & 0xE0 != 0xE0:
        return None
    version, layer = (data[at + 1] >> 3) & 3, (data[at + 1] >> 1) & 3
    bitrate_index, rate_index = data[at + 2] >> 4, (data[at + 2] >> 2) & 3
    if version == 1 or layer != 1 or bitrate_index in (0, 15) or rate_index == 3:
        return None
    bitrate = MP3_BITRATES[1 if version == 3 else 2][bitrate_index] * 1000
    rate = MP3_RATES[version][rate_index]
    padding = (data[at + 2] >> 1) & 1
    length = (144 if version == 3 else 72) * bitrate // rate + padding
    return _Mp3Frame(offset + at, version, bitrate, rate, (data[at + 3] >> 6) == 3, length)


def _mp3(reader: RangeReader, start: int) -> HeaderDuration | None:
    frame = _mp3_first(reader, start)
    return None if frame is None else _mp3_duration(reader, frame)


def _mp3_first(reader: RangeReader, start: int) -> _Mp3Frame | None:
    """The first MP3 frame within MP3_SYNC_SEARCH bytes of ``start`` that another frame follows."""
    data = reader.read(start, MP3_SYNC_SEARCH + 4)
    for at in range(len(data) - 3):
        frame = _mp3_frame(data, at, start)
        if frame is None:
            continue
        following = reader.read(frame.offset + frame.length, 4)
        if len(following) == 4 and _mp3_frame(following, 0, 0) is None:
            continue  # a false sync: no frame where the next one should start
        return frame
    return None


MP3_END_TAGS = (b"TAG", b"APETAGEX", b"LYRICS")  # what may follow the last frame


def mp3_scanned_duration(reader: RangeReader) -> HeaderDuration | None:
    """An MP3's duration from every frame header in it (reads the whole object: for local files).

    None when it is not an MP3. Exact when the frames run to the end or to a
    tag (ID3v1, APE, Lyrics3); else (junk where a frame should be) a lower
    bound: the frames before it. Reads headers only, no audio is decoded.
    """
    head = reader.read(0, 12)
    first = _mp3_first(reader, _id3v2_end(head))
    if first is None:
        return None
    count, at = 0, first.offset
    while (frame := _mp3_frame(reader.read(at, 4), 0, at)) is not None and at + frame.length <= reader.size:
        count, at = count + 1, at + frame.length
    rest = reader.read(at, 8)
    exact = not rest or rest.startswith(MP3_END_TAGS)
    return HeaderDuration(count * first.samples / first.rate, "mp3", exact=exact, at_least=not exact)


def _mp3_duration(reader: RangeReader, frame: _Mp3Frame) -> HeaderDuration | None:
    body = reader.read(frame.offset, frame.length)
    side_info = (17 if frame.mono else 32) if frame.version == 3 else (9 if frame.mono else 17)
    xing = body[4 + side_info:]
    flags = struct.unpack(">I", xing[4:8])[0] if len(xing) >= 8 else 0
    if xing[:4] in (b"Xing", b"Info") and flags & 1 and len(xing) >= 12:
        frames = struct.unpack(">I", xing[8:12])[0]
        return HeaderDuration((frames * frame.samples - _lame_gap(xing, flags)) / frame.rate, "mp3")
    vbri = body[4 + 32:4 + 32 + 18]
    if vbri[:4] == b"VBRI":
        frames = struct.unpack(">I", vbri[14:18])[0]
        return HeaderDuration(frames * frame.samples / frame.rate, "mp3")
    estimate = _mp3_estimate(reader, frame)
    if estimate is not None:
        return HeaderDuration(estimate, "mp3", exact=False)
    least = _mp3_least(reader, frame)
    return None if least is None else HeaderDuration(least, "mp3", exact=False, at_least=True)


def _mp3_estimate(reader: RangeReader, first: _Mp3Frame) -> float | None:
    """Seconds of a stream without a frame count: its size over its frame size, if its bit rate is constant.

    Samples the frames of the first block and of a block in the middle of the
    object. Only when both hold frames and every one has the first frame's
    bit rate does the size tell the duration; a variable bit rate (a quiet
    intro encoded at a low rate, say) makes any estimate wrong, so then None:
    the headers do not say.
    """
    head = _mp3_frames(reader, first.offset, first)
    middle_block = (first.offset + (reader.size - first.offset) // 2) // reader.block * reader.block
    middle = _mp3_frames(reader, middle_block, first)
    sampled = head + middle
    if not head or not middle or any(frame.bitrate != first.bitrate for frame in sampled):
        return None
    frame_bytes = sum(frame.length for frame in sampled) / len(sampled)
    return (reader.size - first.offset) / frame_bytes * first.samples / first.rate


def _mp3_max_frame(like: _Mp3Frame) -> int:
    """The longest frame ``like``'s MPEG version and sample rate allow: the top bit rate, padded."""
    top = MP3_BITRATES[1 if like.version == 3 else 2][-1] * 1000
    return (144 if like.version == 3 else 72) * top // like.rate + 1


def _mp3_least(reader: RangeReader, first: _Mp3Frame) -> float | None:
    """Seconds a variable-bit-rate stream without a frame count lasts at least, from three blocks' frames.

    Counts the frames of the first block, of one in the middle and of the last
    block's worth of bytes, where a chain of frames ends the audio (what follows is a tag). The
    bytes between the blocks read count as frames of the highest bit rate, so
    the result is never more than the real length whatever the bit rates there
    (an estimate from the mean frame size is not: a quiet intro at a low rate
    makes it several times too long). Two frames are left out for the decoder's
    delay. None when the last block holds no frames (a large tag, a cut file):
    the end of the audio is then not known.
    """
    middle_block = (first.offset + (reader.size - first.offset) // 2) // reader.block * reader.block
    last_block = max(first.offset, reader.size - reader.block)  # the last block's worth of bytes
    frames = {frame.offset: frame for start in (first.offset, middle_block, last_block)
              for frame in _mp3_frames(reader, start, first)}
    tail = [frame for frame in frames.values() if frame.offset >= last_block]
    if not tail:
        return None
    end = max(frame.offset + frame.length for frame in tail)
    covered = sum(frame.length for frame in frames.values())
    count = len(frames) + max(0, end - first.offset - covered) // _mp3_max_frame(first)
    return max(0, count - 2) * first.samples / first.rate


def _mp3_frames(reader: RangeReader, offset: int, like: _Mp3Frame) -> list[_Mp3Frame]:
    """The whole frames in the block at ``offset``, from the first of MP3_CHAIN consecutive ones
    of ``like``'s MPEG version and sample rate (so that a false sync is not taken for a frame)."""
    data = reader.read(offset, reader.block)
    for start in range(min(len(data), MP3_SYNC_SEARCH)):
        frames, at = [], start
        while (frame := _mp3_frame(data, at, offset)) is not None and at + frame.length <= len(data) \
                and (frame.version, frame.rate) == (like.version, like.rate):
            frames.append(frame)
            at += frame.length
        if len(frames) >= MP3_CHAIN:
            return frames
    return []


def _lame_gap(xing: bytes, flags: int) -> int:
    """Encoder delay + padding in samples from the LAME tag after a Xing/Info header (0 without one).

    The tag follows the Xing fields that ``flags`` announces (frames 4, bytes 4,
    TOC 100, quality 4 bytes); the two 12-bit counts are at its bytes 21-23.
    """
    lame = 8 + 4 * bool(flags & 1) + 4 * bool(flags & 2) + 100 * bool(flags & 4) + 4 * bool(flags & 8)
    tag = xing[lame:lame + 24]
    if len(tag) < 24 or not tag[:4].isalpha():
        return 0
    gap = int.from_bytes(tag[21:24], "big")
    return (gap >> 12) + (gap & 0xFFF)


def _ogg_page(data: bytes, at: int) -> tuple[int, int, int] | None:
    """(granule position, serial number, header length) of the Ogg page at ``at``."""
    if data[at:at + 4] != b"OggS" or at + 27 > len(data):
        return None
    granule, serial = struct.unpack("<qI", data[at + 6:at + 18])
    return granule, serial, 27 + data[at + 26]


def _ogg(reader: RangeReader) -> HeaderDuration | None:
    head = reader.read(0, 27 + 255 + 19)
    page = _ogg_page(head, 0)
    if page is None:
        return None
    _, serial, header_length = page
    packet = head[header_length:]
    if packet[:7] == b"\x01vorbis" and len(packet) >= 16:
        rate, pre_skip, kind = struct.unpack("<I", packet[12:16])[0], 0, "ogg/vorbis"
    elif packet[:8] == b"OpusHead" and len(packet) >= 12:
        rate, pre_skip, kind = 48000, struct.unpack("<H", packet[10:12])[0], "ogg/opus"
    else:
        return None
    for length in (BLOCK_BYTES, OGG_TAIL_BYTES):  # the last page is usually small: try one block first
        _, tail = reader.tail(length)
        at = tail.rfind(b"OggS")
        while at >= 0:
            page = _ogg_page(tail, at)
            if page is not None and page[1] == serial and page[0] >= 0:
                return HeaderDuration(max(0, page[0] - pre_skip) / rate, kind) if rate else None
            at = tail.rfind(b"OggS", 0, at)
    return None
