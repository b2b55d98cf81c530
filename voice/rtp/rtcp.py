"""RTCP (RFC 3550 section 6): the reports a plain-RTP leg sends and the ones it reads.

Pure: bytes and numbers. We send a compound packet every few seconds: a sender report while
we send media (a receiver report otherwise) with one reception report block about the
peer's stream, then SDES with our CNAME. From the peer's sender reports we keep the middle
of the NTP timestamp and its arrival time, which our next report echoes (LSR/DLSR) so the
peer can measure the round-trip time.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

SR, RR, SDES, BYE = 200, 201, 202, 203
NTP_EPOCH_OFFSET = 2208988800  # seconds from 1900 to 1970

_HEAD = struct.Struct("!BBH")
_BLOCK = struct.Struct("!IIIIII")


@dataclass(frozen=True, slots=True)
class ReportBlock:
    ssrc: int  # whose stream this is about
    fraction_lost: int  # 0..255, lost / expected since the last report, times 256
    cumulative_lost: int  # 24-bit signed
    highest_seq: int  # extended highest sequence number received
    jitter: int  # interarrival jitter, in RTP timestamp units
    lsr: int = 0  # middle 32 bits of the last SR's NTP time
    dlsr: int = 0  # delay since that SR, 1/65536 s

    def pack(self) -> bytes:
        lost = max(-(1 << 23), min((1 << 23) - 1, self.cumulative_lost)) & 0xFFFFFF
        return _BLOCK.pack(
            self.ssrc,
            (self.fraction_lost & 0xFF) << 24 | lost,
            self.highest_seq & 0xFFFFFFFF,
            max(0, self.jitter) & 0xFFFFFFFF,
            self.lsr & 0xFFFFFFFF,
            self.dlsr & 0xFFFFFFFF,
        )

    @classmethod
    def unpack(cls, data: bytes, pos: int) -> ReportBlock:
        ssrc, lost_word, highest, jitter, lsr, dlsr = _BLOCK.unpack_from(data, pos)
        lost = lost_word & 0xFFFFFF
        if lost & 0x800000:
            lost -= 1 << 24
        return cls(ssrc, lost_word >> 24, lost, highest, jitter, lsr, dlsr)


@dataclass(frozen=True, slots=True)
class SenderInfo:
    ntp: int  # 64-bit NTP timestamp
    rtp_timestamp: int
    packets: int
    octets: int


@dataclass(frozen=True, slots=True)
class RtcpReport:
    """One SR or RR of a compound packet."""

    kind: int  # SR or RR
    ssrc: int
    sender: SenderInfo | None
    blocks: tuple[ReportBlock, ...]


def ntp_time(unix_time: float) -> int:
    seconds = int(unix_time) + NTP_EPOCH_OFFSET
    fraction = int((unix_time % 1.0) * (1 << 32))
    return (seconds & 0xFFFFFFFF) << 32 | fraction


def _header(count: int, kind: int, body_len: int) -> bytes:
    return _HEAD.pack(0x80 | count, kind, (4 + body_len) // 4 - 1)


def receiver_report(ssrc: int, blocks: list[ReportBlock]) -> bytes:
    body = struct.pack("!I", ssrc) + b"".join(b.pack() for b in blocks)
    return _header(len(blocks), RR, len(body)) + body


def sender_report(ssrc: int, info: SenderInfo, blocks: list[ReportBlock]) -> bytes:
    body = struct.pack(
        "!IQIII", ssrc, info.ntp, info.rtp_timestamp & 0xFFFFFFFF, info.packets, info.octets
    )
    body += b"".join(b.pack() for b in blocks)
    return _header(len(blocks), SR, len(body)) + body


def sdes_cname(ssrc: int, cname: str) -> bytes:
    text = cname.encode()[:255]
    chunk = struct.pack("!IBB", ssrc, 1, len(text)) + text + b"\0"
    chunk += b"\0" * (-len(chunk) % 4)
    return _header(1, SDES, len(chunk)) + chunk


def parse_rtcp(data: bytes) -> list[RtcpReport] | None:
    """The SR and RR packets of a compound RTCP packet (others skipped); None if malformed."""
    reports: list[RtcpReport] = []
    pos = 0
    if len(data) < 4:
        return None
    while pos + 4 <= len(data):
        first, kind, length = _HEAD.unpack_from(data, pos)
        end = pos + 4 * (length + 1)
        if first & 0xC0 != 0x80 or end > len(data):
            return None
        count = first & 0x1F
        if kind in (SR, RR):
            body = pos + 4
            need = 4 + (20 if kind == SR else 0) + 24 * count
            if body + need > end:
                return None
            (ssrc,) = struct.unpack_from("!I", data, body)
            sender = None
            blocks_at = body + 4
            if kind == SR:
                ntp, rtp_ts, packets, octets = struct.unpack_from("!QIII", data, body + 4)
                sender = SenderInfo(ntp, rtp_ts, packets, octets)
                blocks_at += 20
            blocks = tuple(ReportBlock.unpack(data, blocks_at + 24 * i) for i in range(count))
            reports.append(RtcpReport(kind, ssrc, sender, blocks))
        pos = end
    return reports if pos == len(data) else None
