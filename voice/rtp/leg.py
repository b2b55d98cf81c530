"""Plain-RTP legs: one UDP socket pair (RTP on an even port, RTCP on the next) per participant.

Symmetric RTP: a leg sends to the address it was given and takes packets only from that same
address. Nothing here runs on its own: `RtpPorts.poll(now)` reads every socket that has data
(one `epoll` call for all legs) and sends the RTCP reports that are due; the room engine calls
it at the start of each 20 ms tick, so a packet costs a `recvfrom` and a parse, with no
event-loop wake-up of its own. A leg that never sends costs nothing but its sockets.

Garbage never raises: short or oversized datagrams, wrong RTP versions, malformed headers,
strangers' packets, other payload types and other SSRCs are dropped and counted in `stats`.
The first SSRC heard is locked; another one takes over only after the current one has been
silent for `SSRC_TAKEOVER_S` (a restarted endpoint), so a burst of forged packets cannot.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import random
import select
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, fields

from voice.errors import BadRequest, Unavailable
from voice.rtp import rtcp
from voice.rtp.packet import HEADER, MAX_PACKET_BYTES, RTCP, RtpPacket, parse_rtp

log = logging.getLogger("chorus.rtp")

REPORT_INTERVAL_S = 5.0
MAX_ROUNDS = 8  # reads per socket and poll: a peer that floods gets no more than this a tick
SSRC_TAKEOVER_S = 1.0
_RECV_BUFFER = MAX_PACKET_BYTES + 512  # a datagram that fills it was larger than we take
_SOCKET_BUFFER = 1 << 18
_HEADER = HEADER
_FAST = struct.Struct("!HII")  # seq, timestamp, SSRC after the first two bytes

# codec name -> (RTP clock rate, samples per 20 ms packet, static payload type or None)
CODECS: dict[str, tuple[int, int, int | None]] = {
    "opus": (48000, 960, None),
    "pcmu": (8000, 160, 0),
    "pcma": (8000, 160, 8),
}
DEFAULT_OPUS_PT = 111

PacketSink = Callable[[int, int, bytes, "int | None", float], None]  # seq, ts, payload, level, t


@dataclass
class RtpStats:
    received: int = 0  # datagrams read from the RTP socket
    accepted: int = 0  # handed on as audio
    sent: int = 0
    octets_sent: int = 0
    short: int = 0
    oversized: int = 0
    bad_version: int = 0
    malformed: int = 0
    foreign: int = 0  # from an address other than the peer's
    wrong_payload_type: int = 0
    wrong_ssrc: int = 0
    ssrc_changes: int = 0
    rtcp_received: int = 0
    rtcp_bad: int = 0
    reports_sent: int = 0
    socket_errors: int = 0

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @property
    def dropped(self) -> int:
        return (
            self.short
            + self.oversized
            + self.bad_version
            + self.malformed
            + self.foreign
            + self.wrong_payload_type
            + self.wrong_ssrc
        )


def check_remote(host: str, port: int, family: socket.AddressFamily) -> tuple[str, int]:
    """The peer's address as a socket address; BadRequest for anything we will not send to."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        message = f"host must be an IP address, not {host[:64]!r}"
        raise BadRequest(message, code="bad_host") from None
    if address.is_unspecified or address.is_multicast or str(address) == "255.255.255.255":
        raise BadRequest(f"cannot send media to {address}", code="bad_host")
    if (address.version == 4) != (family == socket.AF_INET):
        raise BadRequest(
            f"host {address} is IPv{address.version}; the media address is not", code="bad_host"
        )
    if not 1 <= port <= 65535:
        raise BadRequest("port must be 1-65535", code="bad_port")
    return str(address), port


class _Reception:
    """What RTCP reports about the peer's stream (RFC 3550 appendix A.1 and A.8)."""

    __slots__ = (
        "base",
        "clock",
        "expected_prior",
        "highest",
        "jitter",
        "received",
        "received_prior",
        "transit",
    )

    def __init__(self, clock: int) -> None:
        self.clock = clock
        self.highest: int | None = None
        self.base = 0
        self.received = 0
        self.expected_prior = 0
        self.received_prior = 0
        self.jitter = 0.0
        self.transit: float | None = None

    def note(self, seq: int, timestamp: int, arrival: float) -> None:
        highest = self.highest
        if highest is None:
            self.highest = self.base = seq
        else:
            delta = (seq - highest) & 0xFFFF
            if delta < 0x8000:
                self.highest = highest + delta
        self.received += 1
        transit = arrival * self.clock - timestamp
        if self.transit is not None:
            d = abs(transit - self.transit)
            if d < self.clock * 10:  # a timestamp jump (DTX, restart) is not jitter
                self.jitter += (d - self.jitter) / 16
        self.transit = transit

    def block(self, ssrc: int, lsr: int, dlsr: int) -> rtcp.ReportBlock:
        assert self.highest is not None
        expected = self.highest - self.base + 1
        expected_interval = expected - self.expected_prior
        received_interval = self.received - self.received_prior
        self.expected_prior, self.received_prior = expected, self.received
        lost_interval = expected_interval - received_interval
        fraction = 0
        if expected_interval > 0 and lost_interval > 0:
            fraction = (lost_interval << 8) // expected_interval
        return rtcp.ReportBlock(
            ssrc, fraction, expected - self.received, self.highest, int(self.jitter), lsr, dlsr
        )


class RtpLeg:
    """One plain-RTP participant's media: `on_packet` gets what it sends, `send_frame` sends.

    `send_frame(payload, tick)` sends one 20 ms packet for the engine's tick number `tick`:
    timestamps follow the ticks, so ticks with nothing to send (silence, Opus DTX) leave a
    gap of the right length, and the packet after a gap carries the marker bit.
    """

    def __init__(
        self,
        *,
        ports: RtpPorts,
        rtp_sock: socket.socket,
        rtcp_sock: socket.socket,
        remote: tuple[str, int],
        codec: str,
        payload_type: int,
        label: str,
        rtcp_mux: bool = False,
        audio_level_id: int | None = None,
    ) -> None:
        self._ports = ports
        self._rtp = rtp_sock
        self._rtcp = rtcp_sock
        self.remote = remote
        self.remote_rtcp = remote if rtcp_mux else (remote[0], remote[1] + 1)
        self.codec = codec
        self.clock_rate, self.frame_samples, _ = CODECS[codec]
        self.payload_type = payload_type
        self.label = label
        self.audio_level_id = audio_level_id
        self.local_port: int = rtp_sock.getsockname()[1]
        self.on_packet: PacketSink | None = None
        self.stats = RtpStats()
        self.ssrc = random.getrandbits(32)
        self._seq = random.getrandbits(16)
        self._ts_base = random.getrandbits(32)
        self._last_tick: int | None = None
        self._last_ts = 0
        self._peer_ssrc: int | None = None
        self._peer_last = 0.0
        self._reception = _Reception(self.clock_rate)
        self._lsr = 0
        self._lsr_at = 0.0
        self._sent_since_report = False
        self._next_report = time.monotonic() + REPORT_INTERVAL_S * random.uniform(0.5, 1.0)
        self._buffer = bytearray(_RECV_BUFFER)
        self._view = memoryview(self._buffer)
        self.closed = False

    # -- receiving --------------------------------------------------------------------

    def read(self, now: float, limit: int = 1 << 30) -> None:
        """Take the datagrams waiting on the RTP socket (at most `limit` of them)."""
        sock, buffer, view, stats = self._rtp, self._buffer, self._view, self.stats
        remote, pt = self.remote, self.payload_type
        reception = self._reception
        sink = self.on_packet
        for _ in range(limit):
            try:
                size, source = sock.recvfrom_into(buffer)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                stats.socket_errors += 1
                return
            stats.received += 1
            if source != remote and source[:2] != remote:
                stats.foreign += 1
                continue
            if size > MAX_PACKET_BYTES:
                stats.oversized += 1
                continue
            if (
                size > 12
                and buffer[0] == 0x80  # version 2; no padding, extension or CSRCs
                and buffer[1] & 0x7F == pt
            ):
                # The fast path, almost every packet: no parse_rtp, no objects but the payload.
                seq, timestamp, ssrc = _FAST.unpack_from(buffer, 2)
                if ssrc == self._peer_ssrc:
                    self._peer_last = now
                    reception.note(seq, timestamp, now)
                    stats.accepted += 1
                    if sink is not None:
                        sink(seq, timestamp, bytes(view[12:size]), None, now)
                    continue
            packet = parse_rtp(bytes(view[:size]), self.audio_level_id)
            if isinstance(packet, str):
                if packet == RTCP:
                    self._on_rtcp(bytes(view[:size]), now)
                else:
                    setattr(stats, packet, getattr(stats, packet) + 1)
                continue
            self._accept(packet, now)
            reception = self._reception  # a new SSRC starts a new one

    def _accept(self, packet: RtpPacket, now: float) -> None:
        stats = self.stats
        if packet.payload_type != self.payload_type:
            stats.wrong_payload_type += 1
            return
        if packet.ssrc != self._peer_ssrc:
            if self._peer_ssrc is not None and now - self._peer_last < SSRC_TAKEOVER_S:
                stats.wrong_ssrc += 1
                return
            if self._peer_ssrc is not None:
                stats.ssrc_changes += 1
                log.info("[%s] peer SSRC changed to %08x", self.label, packet.ssrc)
            self._peer_ssrc = packet.ssrc
            self._reception = _Reception(self.clock_rate)
        self._peer_last = now
        if not packet.payload:
            return  # padding-only keep-alive
        self._reception.note(packet.seq, packet.timestamp, now)
        stats.accepted += 1
        sink = self.on_packet
        if sink is not None:
            sink(packet.seq, packet.timestamp, packet.payload, packet.level, now)

    def read_rtcp(self, now: float) -> None:
        while True:
            try:
                size, source = self._rtcp.recvfrom_into(self._buffer)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                self.stats.socket_errors += 1
                return
            if source[0] != self.remote[0] or size > MAX_PACKET_BYTES:
                self.stats.foreign += 1
                continue
            self._on_rtcp(bytes(self._buffer[:size]), now)

    def _on_rtcp(self, data: bytes, now: float) -> None:
        reports = rtcp.parse_rtcp(data)
        if reports is None:
            self.stats.rtcp_bad += 1
            return
        self.stats.rtcp_received += 1
        for report in reports:
            if report.sender is not None and report.ssrc == self._peer_ssrc:
                self._lsr = (report.sender.ntp >> 16) & 0xFFFFFFFF
                self._lsr_at = now

    # -- sending ----------------------------------------------------------------------

    def send_frame(self, payload: bytes, tick: int) -> None:
        last = self._last_tick
        second = self.payload_type
        if last is None or tick != last + 1:
            second |= 0x80  # the marker bit: the first packet after a gap
        self._last_tick = tick
        timestamp = (self._ts_base + tick * self.frame_samples) & 0xFFFFFFFF
        self._last_ts = timestamp
        seq = self._seq
        self._seq = (seq + 1) & 0xFFFF
        try:
            self._rtp.sendto(
                _HEADER.pack(0x80, second, seq, timestamp, self.ssrc) + payload, self.remote
            )
        except OSError:
            self.stats.socket_errors += 1
            return
        stats = self.stats
        stats.sent += 1
        stats.octets_sent += len(payload)
        self._sent_since_report = True

    def report(self, now: float, wall: float | None = None) -> bytes | None:
        """Send the compound RTCP packet (SR or RR, then SDES) if one is due; returns it."""
        if now < self._next_report or self.closed:
            return None
        self._next_report = now + REPORT_INTERVAL_S * random.uniform(0.5, 1.5)
        blocks = []
        if self._peer_ssrc is not None and self._reception.highest is not None:
            dlsr = int((now - self._lsr_at) * 65536) if self._lsr else 0
            blocks.append(self._reception.block(self._peer_ssrc, self._lsr, dlsr))
        if self._sent_since_report:
            info = rtcp.SenderInfo(
                rtcp.ntp_time(time.time() if wall is None else wall),
                self._last_ts,
                self.stats.sent,
                self.stats.octets_sent,
            )
            packet = rtcp.sender_report(self.ssrc, info, blocks)
        elif blocks:
            packet = rtcp.receiver_report(self.ssrc, blocks)
        else:
            return None  # nothing sent, nothing heard: nothing to report
        self._sent_since_report = False
        packet += rtcp.sdes_cname(self.ssrc, f"chorus-{self.label}")
        try:
            self._rtcp.sendto(packet, self.remote_rtcp)
        except OSError:
            self.stats.socket_errors += 1
            return None
        self.stats.reports_sent += 1
        return packet

    # -- lifecycle --------------------------------------------------------------------

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._ports._forget(self)
        self._rtp.close()
        self._rtcp.close()
        log.info("[%s] closed: %s", self.label, self.stats.as_dict())

    def fileno_pair(self) -> tuple[int, int]:
        return self._rtp.fileno(), self._rtcp.fileno()


class RtpPorts:
    """The media ports of this process: opens legs in [port_min, port_max] on `host` and
    reads all of them with one epoll."""

    def __init__(self, host: str, port_min: int, port_max: int) -> None:
        address = ipaddress.ip_address(host)
        self.host = str(address)
        self.family = socket.AF_INET if address.version == 4 else socket.AF_INET6
        if not 1024 <= port_min < port_max <= 65535:
            raise ValueError("need 1024 <= rtp_port_min < rtp_port_max <= 65535")
        self.port_min = port_min + (port_min % 2)  # RTP on even ports (RFC 3550 11)
        self.port_max = port_max
        self._epoll: select.epoll | None = None
        self._by_fd: dict[int, tuple[RtpLeg, bool]] = {}
        self._legs: set[RtpLeg] = set()
        self._next_reports = 0.0

    @property
    def legs(self) -> int:
        return len(self._legs)

    def open(
        self,
        *,
        remote_host: str,
        remote_port: int,
        codec: str,
        payload_type: int | None = None,
        label: str,
        rtcp_mux: bool = False,
        audio_level_id: int | None = None,
    ) -> RtpLeg:
        if codec not in CODECS:
            raise BadRequest(f"codec must be one of {', '.join(CODECS)}", code="bad_codec")
        remote = check_remote(remote_host, remote_port, self.family)
        static = CODECS[codec][2]
        pt = payload_type if payload_type is not None else static
        if pt is None:
            pt = DEFAULT_OPUS_PT
        if not 0 <= pt <= 127 or 64 <= pt <= 95:
            raise BadRequest("payload_type must be 0-63 or 96-127", code="bad_payload_type")
        if audio_level_id is not None and not 1 <= audio_level_id <= 14:
            raise BadRequest("audio_level_id must be 1-14", code="bad_extension_id")
        rtp_sock, rtcp_sock = self._bind_pair()
        leg = RtpLeg(
            ports=self,
            rtp_sock=rtp_sock,
            rtcp_sock=rtcp_sock,
            remote=remote,
            codec=codec,
            payload_type=pt,
            label=label,
            rtcp_mux=rtcp_mux,
            audio_level_id=audio_level_id,
        )
        if self._epoll is None:
            self._epoll = select.epoll()
        for fd, is_rtcp in zip(leg.fileno_pair(), (False, True), strict=True):
            self._epoll.register(fd, select.EPOLLIN)
            self._by_fd[fd] = (leg, is_rtcp)
        self._legs.add(leg)
        log.info("[%s] %s on %s:%d <-> %s:%d", label, codec, self.host, leg.local_port, *remote)
        return leg

    def _bind_pair(self) -> tuple[socket.socket, socket.socket]:
        pairs = (self.port_max - self.port_min + 1) // 2  # (even RTP, odd RTCP) pairs
        if pairs < 1:
            raise Unavailable("the RTP port range is too small", code="no_media_ports")
        start = random.randrange(pairs)
        for attempt in range(min(pairs, 64)):
            port = self.port_min + 2 * ((start + attempt) % pairs)
            sockets = []
            try:
                for p in (port, port + 1):
                    sock = socket.socket(self.family, socket.SOCK_DGRAM)
                    sockets.append(sock)
                    sock.bind((self.host, p))
            except OSError:
                for sock in sockets:
                    sock.close()
                continue
            for sock in sockets:
                sock.setblocking(False)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _SOCKET_BUFFER)
            return sockets[0], sockets[1]
        raise Unavailable("no free RTP port in the configured range", code="no_media_ports")

    def poll(self, now: float) -> None:
        """Read every socket with data waiting; send the RTCP reports that are due."""
        if self._epoll is None or not self._legs:
            return
        # One datagram per ready socket and round, then ask epoll again: a socket usually
        # holds one packet a tick, and reading on until EAGAIN would cost a failed recvfrom
        # (and an exception) per socket per tick; an epoll call for all of them is cheaper.
        by_fd, epoll = self._by_fd, self._epoll
        for _ in range(MAX_ROUNDS):
            ready = epoll.poll(0)
            if not ready:
                break
            for fd, _ in ready:
                entry = by_fd.get(fd)
                if entry is None:
                    continue
                leg, is_rtcp = entry
                if is_rtcp:
                    leg.read_rtcp(now)
                else:
                    leg.read(now, 1)
        if now >= self._next_reports:
            self._next_reports = now + 0.5
            for leg in list(self._legs):
                leg.report(now)

    def _forget(self, leg: RtpLeg) -> None:
        self._legs.discard(leg)
        for fd in leg.fileno_pair():
            if self._by_fd.pop(fd, None) is not None and self._epoll is not None:
                with contextlib.suppress(OSError):
                    self._epoll.unregister(fd)

    def close(self) -> None:
        for leg in list(self._legs):
            leg.close()
        if self._epoll is not None:
            self._epoll.close()
            self._epoll = None
