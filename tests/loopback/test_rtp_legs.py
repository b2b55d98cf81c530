"""Plain-RTP legs over real UDP sockets on loopback: symmetric RTP, garbage, SSRC changes,
RTCP reports, the port range."""

from __future__ import annotations

import socket
import struct
import time

import pytest

from voice.errors import Unavailable
from voice.rtp import RtpPorts, rtcp
from voice.rtp.packet import audio_level_extension, build_rtp, build_rtp_with_extension


class Endpoint:
    """The far end: an RTP socket and an RTCP socket on the next port."""

    def __init__(self) -> None:
        for _ in range(50):
            rtp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            rtp.bind(("127.0.0.1", 0))
            port = rtp.getsockname()[1]
            rtcp_sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                rtcp_sock.bind(("127.0.0.1", port + 1))
            except OSError:
                rtp.close()
                rtcp_sock.close()
                continue
            break
        self.rtp, self.rtcp, self.port = rtp, rtcp_sock, port
        for sock in (rtp, rtcp_sock):
            sock.settimeout(2)

    def close(self) -> None:
        self.rtp.close()
        self.rtcp.close()


@pytest.fixture
def endpoint():
    made = Endpoint()
    yield made
    made.close()


@pytest.fixture
def ports():
    made = RtpPorts("127.0.0.1", 41000, 41099)
    yield made
    made.close()


def settle(ports: RtpPorts, now: float | None = None) -> None:
    time.sleep(0.02)
    for _ in range(3):  # a poll reads at most MAX_ROUNDS datagrams per socket
        ports.poll(time.monotonic() if now is None else now)


def test_symmetric_rtp_both_ways(ports, endpoint):
    leg = ports.open(
        remote_host="127.0.0.1",
        remote_port=endpoint.port,
        codec="opus",
        label="t",
        audio_level_id=1,
    )
    assert leg.local_port % 2 == 0 and 41000 <= leg.local_port <= 41099
    got = []
    leg.on_packet = lambda *args: got.append(args)
    server = ("127.0.0.1", leg.local_port)
    endpoint.rtp.sendto(build_rtp(111, 7, 960, 42, b"hello"), server)
    level = audio_level_extension(1, -33)
    endpoint.rtp.sendto(build_rtp_with_extension(111, 8, 1920, 42, b"again", level), server)
    settle(ports)
    assert [(seq, ts, payload, lvl) for seq, ts, payload, lvl, _ in got] == [
        (7, 960, b"hello", None),
        (8, 1920, b"again", -33),
    ]
    leg.send_frame(b"mix-1", 10)
    leg.send_frame(b"mix-2", 11)
    leg.send_frame(b"mix-3", 14)  # after a gap (DTX): the timestamp jumps, marker set
    packets = [endpoint.rtp.recvfrom(2048) for _ in range(3)]
    assert all(source == server for _, source in packets)
    headers = [struct.unpack("!BBHII", data[:12]) for data, _ in packets]
    assert [data[12:] for data, _ in packets] == [b"mix-1", b"mix-2", b"mix-3"]
    assert [h[1] & 0x7F for h in headers] == [111] * 3
    assert [h[1] >> 7 for h in headers] == [1, 0, 1]
    seqs, stamps = [h[2] for h in headers], [h[3] for h in headers]
    assert [(s - seqs[0]) % 65536 for s in seqs] == [0, 1, 2]
    assert [(t - stamps[0]) % 2**32 for t in stamps] == [0, 960, 4 * 960]
    assert len({h[4] for h in headers}) == 1


def test_garbage_strangers_and_other_ssrcs_are_dropped_and_counted(ports, endpoint):
    leg = ports.open(remote_host="127.0.0.1", remote_port=endpoint.port, codec="pcmu", label="t")
    got = []
    leg.on_packet = lambda *args: got.append(args)
    server = ("127.0.0.1", leg.local_port)
    send = endpoint.rtp.sendto
    send(build_rtp(0, 1, 160, 42, b"\xff" * 160), server)  # locks SSRC 42
    for junk in (b"", b"\x80", b"\x40" + b"\0" * 20, b"\x8f" + b"\0" * 12, b"\x80" * 1800):
        send(junk, server)
    send(build_rtp(8, 2, 320, 42, b"\xd5" * 160), server)  # PCMA on a PCMU leg
    for seq in range(3, 8):
        send(build_rtp(0, seq, 160 * seq, 99, b"\xff" * 160), server)  # a forged burst
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as stranger:
        stranger.bind(("127.0.0.1", 0))
        stranger.sendto(build_rtp(0, 9, 1440, 42, b"\xff" * 160), server)
    settle(ports)
    stats = leg.stats
    assert len(got) == 1
    assert (stats.short, stats.bad_version, stats.malformed, stats.oversized) == (2, 1, 1, 1)
    assert (stats.wrong_payload_type, stats.wrong_ssrc, stats.foreign) == (1, 5, 1)
    assert stats.dropped == 12 and stats.accepted == 1
    # A new SSRC takes over once the old one has been silent for a second (a restart).
    send(build_rtp(0, 500, 80000, 77, b"\xff" * 160), server)
    settle(ports, now=time.monotonic() + 1.5)
    assert stats.ssrc_changes == 1 and len(got) == 2


def test_rtcp_reports_go_to_the_next_port_and_echo_the_sender_report(ports, endpoint):
    leg = ports.open(remote_host="127.0.0.1", remote_port=endpoint.port, codec="pcmu", label="t")
    server = ("127.0.0.1", leg.local_port)
    for seq in (1, 2, 4, 5):  # seq 3 lost
        endpoint.rtp.sendto(build_rtp(0, seq, 160 * seq, 42, b"\xff" * 160), server)
    info = rtcp.SenderInfo(rtcp.ntp_time(time.time()), 800, 5, 800)
    endpoint.rtcp.sendto(rtcp.sender_report(42, info, []), ("127.0.0.1", leg.local_port + 1))
    settle(ports)
    assert leg.stats.rtcp_received == 1
    leg.send_frame(b"\xff" * 160, 1)
    endpoint.rtp.recvfrom(2048)
    packet = leg.report(time.monotonic() + 60)
    assert packet is not None
    data, source = endpoint.rtcp.recvfrom(2048)
    assert data == packet and source == ("127.0.0.1", leg.local_port + 1)
    (report,) = rtcp.parse_rtcp(data)
    assert report.kind == rtcp.SR and report.ssrc == leg.ssrc and report.sender.packets == 1
    (block,) = report.blocks
    assert (block.ssrc, block.cumulative_lost, block.fraction_lost) == (42, 1, 256 // 5)
    assert block.highest_seq == 5 and block.lsr == (info.ntp >> 16) & 0xFFFFFFFF
    assert b"chorus-t" in data  # SDES CNAME
    assert leg.report(time.monotonic()) is None  # not due again yet


def test_the_port_range_runs_out_cleanly(endpoint):
    small = RtpPorts("127.0.0.1", 41200, 41203)  # two RTP/RTCP pairs
    try:
        legs = [
            small.open(remote_host="127.0.0.1", remote_port=endpoint.port, codec="opus", label=i)
            for i in ("a", "b")
        ]
        with pytest.raises(Unavailable) as info:
            small.open(remote_host="127.0.0.1", remote_port=endpoint.port, codec="opus", label="c")
        assert info.value.code == "no_media_ports"
        legs[0].close()
        assert small.legs == 1
        small.open(remote_host="127.0.0.1", remote_port=endpoint.port, codec="opus", label="d")
    finally:
        small.close()
    assert small.legs == 0
