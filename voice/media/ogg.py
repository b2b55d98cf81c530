"""Ogg Opus files (RFC 7845): a writer for recordings and a reader for tests and tools.

Pure: bytes in, bytes out; the caller owns the file. Mono, 48 kHz, 20 ms packets. The Ogg
CRC (polynomial 0x04C11DB7, MSB first, no reflection, no final xor) is computed with zlib's
reflected CRC-32 on bit-reversed bytes, so a page costs C speed rather than a Python loop.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field

FRAME_SAMPLES = 960
PRE_SKIP = 312  # libopus' encoder look-ahead at 48 kHz (6.5 ms)
_MAX_SEGMENTS = 255
_HEADER = struct.Struct("<4sBBqIIIB")  # capture, version, type, granule, serial, seq, crc, nseg
_REVERSED_BITS = bytes(int(f"{i:08b}"[::-1], 2) for i in range(256))


def _reverse32(value: int) -> int:
    return int(f"{value:032b}"[::-1], 2)


def ogg_crc(data: bytes) -> int:
    """The Ogg page checksum of `data` (with its CRC field zeroed)."""
    # zlib: register starts at ~value, ends xored with 0xFFFFFFFF; value=0xFFFFFFFF starts it
    # at 0, and xoring the result back undoes the final xor.
    raw = zlib.crc32(data.translate(_REVERSED_BITS), 0xFFFFFFFF) ^ 0xFFFFFFFF
    return _reverse32(raw)


def opus_head(pre_skip: int = PRE_SKIP, channels: int = 1, rate: int = 48000) -> bytes:
    return b"OpusHead" + struct.pack("<BBHIhB", 1, channels, pre_skip, rate, 0, 0)


def opus_tags(vendor: str = "chorus", comments: tuple[str, ...] = ()) -> bytes:
    out = [b"OpusTags", struct.pack("<I", len(vendor.encode())), vendor.encode()]
    out.append(struct.pack("<I", len(comments)))
    for comment in comments:
        encoded = comment.encode()
        out += [struct.pack("<I", len(encoded)), encoded]
    return b"".join(out)


def _lacing(size: int) -> list[int]:
    return [255] * (size // 255) + [size % 255]


@dataclass
class OggOpusWriter:
    """Packets in, finished Ogg pages out: `header()` first, `add()` per 20 ms packet, and
    `flush()` / `close()` give the bytes to append to the file."""

    serial: int
    comments: tuple[str, ...] = ()
    pages_per_flush: int = 50  # about one page a second
    _sequence: int = 0
    _granule: int = 0
    _pending: list[bytes] = field(default_factory=list)

    def header(self) -> bytes:
        first = self._page([opus_head()], granule=0, flags=0x02)
        return first + self._page([opus_tags(comments=self.comments)], granule=0)

    def add(self, packet: bytes) -> bytes:
        """Queue one 20 ms packet; returns a page when enough are queued, else b""."""
        self._pending.append(packet)
        self._granule += FRAME_SAMPLES
        segments = sum(len(p) // 255 + 1 for p in self._pending)
        if len(self._pending) >= self.pages_per_flush or segments > _MAX_SEGMENTS - 8:
            return self.flush()
        return b""

    def flush(self, *, last: bool = False) -> bytes:
        if not self._pending and not last:
            return b""
        packets, self._pending = self._pending, []
        return self._page(packets, granule=self._granule, flags=0x04 if last else 0)

    def close(self) -> bytes:
        return self.flush(last=True)

    @property
    def duration_s(self) -> float:
        return self._granule / 48000

    def _page(self, packets: list[bytes], *, granule: int, flags: int = 0) -> bytes:
        lacing: list[int] = []
        for packet in packets:
            lacing += _lacing(len(packet))
        if len(lacing) > _MAX_SEGMENTS:
            raise ValueError("too many packets for one Ogg page")
        header = _HEADER.pack(
            b"OggS", 0, flags, granule, self.serial, self._sequence, 0, len(lacing)
        )
        page = header + bytes(lacing) + b"".join(packets)
        self._sequence += 1
        crc = ogg_crc(page)
        return page[:22] + struct.pack("<I", crc) + page[26:]


@dataclass(frozen=True)
class OggPage:
    flags: int
    granule: int
    serial: int
    sequence: int
    packets: tuple[bytes, ...]  # whole packets ending on this page (no continued packets)


def read_pages(data: bytes) -> Iterator[OggPage]:
    """Parse pages, checking each CRC; ValueError on a malformed file. Packets continued
    across pages are not joined (the writer never makes them)."""
    pos = 0
    while pos < len(data):
        if len(data) - pos < _HEADER.size:
            raise ValueError("truncated Ogg page header")
        capture, version, flags, granule, serial, seq, crc, count = _HEADER.unpack_from(data, pos)
        if capture != b"OggS" or version != 0:
            raise ValueError(f"not an Ogg page at byte {pos}")
        lacing = data[pos + _HEADER.size : pos + _HEADER.size + count]
        body = pos + _HEADER.size + count
        end = body + sum(lacing)
        if end > len(data):
            raise ValueError("truncated Ogg page")
        page = data[pos:end]
        if ogg_crc(page[:22] + b"\0\0\0\0" + page[26:]) != crc:
            raise ValueError(f"bad CRC in Ogg page {seq}")
        packets, start, size = [], body, 0
        for value in lacing:
            size += value
            if value < 255:
                packets.append(data[start : start + size])
                start += size
                size = 0
        yield OggPage(flags, granule, serial, seq, tuple(packets))
        pos = end


def read_opus_packets(data: bytes) -> list[bytes]:
    """The audio packets of an Ogg Opus file (the two header packets skipped)."""
    packets = [p for page in read_pages(data) for p in page.packets]
    if len(packets) < 2 or not packets[0].startswith(b"OpusHead"):
        raise ValueError("not an Ogg Opus file")
    return packets[2:]
