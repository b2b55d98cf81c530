"""RTP packets (RFC 3550 section 5.1): parse what comes off a socket, build what goes out.

Pure: bytes only. Parsing never raises: anything that is not a well-formed RTP packet comes
back as a short reason string, so the leg counts it and moves on. RTCP multiplexed on the
RTP port (RFC 5761: second byte 192-223) is told apart here too.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from voice.media.level import header_extension_element, parse_audio_level_extension

MAX_PACKET_BYTES = 1500  # larger datagrams are dropped: no 20 ms audio frame comes close
HEADER = struct.Struct("!BBHII")

# Reasons a datagram is not taken (the names of the counters).
SHORT = "short"
VERSION = "bad_version"
MALFORMED = "malformed"
RTCP = "rtcp"


@dataclass(slots=True)
class RtpPacket:  # made per packet: not frozen (4x cheaper to build); treat as read-only
    payload_type: int
    marker: bool
    seq: int
    timestamp: int
    ssrc: int
    payload: bytes
    level: int | None = None  # RFC 6464 audio level in dBov, when asked for and present


def parse_rtp(data: bytes, audio_level_id: int | None = None) -> RtpPacket | str:
    """An RtpPacket, or the reason it is not one (SHORT, VERSION, MALFORMED, RTCP)."""
    size = len(data)
    if size < 12:
        return SHORT
    first, second, seq, timestamp, ssrc = HEADER.unpack_from(data)
    if first & 0xC0 != 0x80:
        return VERSION
    if 192 <= second <= 223:
        return RTCP
    pos = 12 + 4 * (first & 0x0F)  # CSRCs
    level = None
    if first & 0x10:  # header extension
        if size < pos + 4:
            return MALFORMED
        profile, words = struct.unpack_from("!HH", data, pos)
        start, pos = pos + 4, pos + 4 + 4 * words
        if audio_level_id is not None and pos <= size:
            element = header_extension_element(profile, data[start:pos], audio_level_id)
            if element:
                level = parse_audio_level_extension(element)[1]
    end = size
    if first & 0x20:  # padding: the last byte says how much
        end -= data[-1]
    if pos > end or end > size:
        return MALFORMED
    return RtpPacket(
        second & 0x7F, bool(second & 0x80), seq, timestamp, ssrc, bytes(data[pos:end]), level
    )


def build_rtp(
    payload_type: int, seq: int, timestamp: int, ssrc: int, payload: bytes, marker: bool = False
) -> bytes:
    second = (payload_type & 0x7F) | (0x80 if marker else 0)
    return HEADER.pack(0x80, second, seq & 0xFFFF, timestamp & 0xFFFFFFFF, ssrc) + payload


def audio_level_extension(ext_id: int, dbov: int, voice: bool = False) -> tuple[int, bytes]:
    """(profile, block) of a one-byte-header extension carrying one RFC 6464 level."""
    level = min(127, max(0, -dbov))
    element = bytes(((ext_id << 4) | 0, (0x80 if voice else 0) | level))
    return 0xBEDE, element + b"\0\0"  # padded to a 32-bit word


def build_rtp_with_extension(
    payload_type: int,
    seq: int,
    timestamp: int,
    ssrc: int,
    payload: bytes,
    extension: tuple[int, bytes],
    marker: bool = False,
) -> bytes:
    """A packet with a header extension (for tests and tools; the server sends none)."""
    profile, block = extension
    if len(block) % 4:
        raise ValueError("an extension block is a whole number of 32-bit words")
    second = (payload_type & 0x7F) | (0x80 if marker else 0)
    header = HEADER.pack(0x90, second, seq & 0xFFFF, timestamp & 0xFFFFFFFF, ssrc)
    return header + struct.pack("!HH", profile, len(block) // 4) + block + payload
