"""Server CPU per one-to-one call: WebRtcLeg relay versus aiortc's stock track path.

One server process carries N calls (two peer connections each, audio both ways). The callers
and callees are light aiortc peers in other processes: they send pre-encoded Opus and count
received RTP packets without decoding, so their own cost stays small and out of the server's
measurement (`time.process_time` of the server process, all its threads, over a window).

- relay: `WebRtcLeg`s bridged with `a.relay_to(b); b.relay_to(a)`: no decode, no encode.
- stock: plain `RTCPeerConnection`s bridged with aiortc's `MediaRelay`: the server decodes
  each stream (a PyAV decoder thread per receiver) and re-encodes it with aiortc's encoder.

Then the relay is stepped up (10, 20, 30...) to find the most calls one server process
carries in real time (>= 99 % of the expected packets delivered to the clients). On a small
machine the load generators compete with the server for cores: their CPU is printed too.
Loopback only. Not run by pytest.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import os
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

import numpy as np
from aiortc import (
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpSender,
    RTCSessionDescription,
)
from aiortc.contrib.media import MediaRelay

from voice.media.opus import OpusClip, encode_loop
from voice.webrtc import (
    WebRtcConfig,
    WebRtcLeg,
    close_peer_connection,
    configure_host_candidates,
)
from voice.webrtc import receive as passthrough
from voice.webrtc.track import PacketTrack

PACKETS_PER_S = 50
OPUS_PT = 96  # aiortc offers Opus as payload type 96
BUSY_MACHINE_PCT = 40.0  # other work above this (% of a core) makes a failed step retry once


# -- the processes ---------------------------------------------------------------------------


class Channel:
    """The asyncio side of a multiprocessing pipe: requests in, replies out."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.inbox: asyncio.Queue[Any] = asyncio.Queue()
        asyncio.get_running_loop().add_reader(conn.fileno(), self._readable)

    def _readable(self) -> None:
        while self.conn.poll():
            self.inbox.put_nowait(self.conn.recv())

    async def requests(self):
        while True:
            message = await self.inbox.get()
            yield message
            if message[0] == "exit":
                return


async def serve(conn: Connection, mode: str) -> None:
    configure_host_candidates("127.0.0.1")
    channel = Channel(conn)
    legs: list[WebRtcLeg] = []
    pcs: list[RTCPeerConnection] = []
    relay = MediaRelay()
    config = WebRtcConfig()
    started = (0.0, 0.0, 0, 0)

    def counters() -> tuple[int, int]:
        return sum(x.packets_received for x in legs), sum(x.packets_sent for x in legs)

    async for message in channel.requests():
        kind = message[0]
        if kind == "offers":
            answers = []
            for offer_a, offer_b in message[1]:
                if mode == "relay":
                    a = await WebRtcLeg.accept(offer_a, config=config, label=f"a{len(legs)}")
                    b = await WebRtcLeg.accept(offer_b, config=config, label=f"b{len(legs)}")
                    a.relay_to(b)
                    b.relay_to(a)
                    legs += [a, b]
                    answers.append((a.answer_sdp, b.answer_sdp))
                else:
                    pair = await stock_bridge(offer_a, offer_b, relay)
                    pcs += pair
                    answers.append(tuple(pc.localDescription.sdp for pc in pair))
            conn.send(("answers", answers))
        elif kind == "start":
            started = (time.process_time(), time.monotonic(), *counters())
            conn.send(("ok",))
        elif kind == "stop":
            cpu, wall = time.process_time() - started[0], time.monotonic() - started[1]
            received, sent = counters()
            conn.send(("cpu", cpu, wall, received - started[2], sent - started[3]))
        elif kind == "exit":
            for leg in legs:
                await leg.close()
            for pc in pcs:
                await close_peer_connection(pc)
            conn.send(("bye",))


async def stock_bridge(offer_a: str, offer_b: str, relay: MediaRelay) -> list[RTCPeerConnection]:
    """Two peer connections whose received tracks feed each other's sender, decoded."""
    pcs = [RTCPeerConnection(RTCConfiguration(iceServers=[])) for _ in range(2)]
    for pc, offer in zip(pcs, (offer_a, offer_b), strict=True):
        await pc.setRemoteDescription(RTCSessionDescription(offer, "offer"))
    tracks = [pc.getTransceivers()[0].receiver.track for pc in pcs]
    pcs[0].addTrack(relay.subscribe(tracks[1]))
    pcs[1].addTrack(relay.subscribe(tracks[0]))
    for pc in pcs:
        await pc.setLocalDescription(await pc.createAnswer())
    return pcs


class LoadPeer:
    """Sends a pre-encoded Opus sine, counts received packets, decodes nothing."""

    def __init__(self, clip: OpusClip) -> None:
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.track = PacketTrack()
        self.track.play(clip, loop=True)
        transceiver = self.pc.addTransceiver(self.track, direction="sendrecv")
        transceiver.setCodecPreferences(
            [c for c in RTCRtpSender.getCapabilities("audio").codecs if c.name == "opus"]
        )
        self.received = 0
        passthrough.install(transceiver.receiver, OPUS_PT, self._count)

    def _count(self, *packet: object) -> None:
        self.received += 1

    async def offer(self) -> str:
        await self.pc.setLocalDescription(await self.pc.createOffer())
        return self.pc.localDescription.sdp


async def load(conn: Connection, count: int) -> None:
    configure_host_candidates("127.0.0.1")
    channel = Channel(conn)
    t = np.arange(PACKETS_PER_S * 960) / 48000
    clip = encode_loop(np.round(np.sin(2 * np.pi * 440 * t) * 8000).astype(np.int16))
    peers = [LoadPeer(clip) for _ in range(count)]
    marks: tuple[float, list[int], int] = (0.0, [], 0)
    async for message in channel.requests():
        kind = message[0]
        if kind == "offer":
            conn.send(("offers", [await peer.offer() for peer in peers]))
        elif kind == "answers":
            for peer, answer in zip(peers, message[1], strict=True):
                await peer.pc.setRemoteDescription(RTCSessionDescription(answer, "answer"))
            conn.send(("ok",))
        elif kind == "flowing":
            deadline = time.monotonic() + message[1]
            while time.monotonic() < deadline and min(p.received for p in peers) < 25:
                await asyncio.sleep(0.1)
            conn.send(("flowing", sum(p.received >= 25 for p in peers)))
        elif kind == "start":
            sent = sum(p.track.packets_sent for p in peers)
            marks = (time.process_time(), [p.received for p in peers], sent)
            conn.send(("ok",))
        elif kind == "stop":
            got = [p.received - before for p, before in zip(peers, marks[1], strict=True)]
            sent = sum(p.track.packets_sent for p in peers) - marks[2]
            conn.send(("counts", got, time.process_time() - marks[0], sent))
        elif kind == "exit":
            for peer in peers:
                await close_peer_connection(peer.pc)
            conn.send(("bye",))


def server_main(conn: Connection, mode: str) -> None:
    asyncio.run(serve(conn, mode))


def load_main(conn: Connection, count: int) -> None:
    asyncio.run(load(conn, count))


# -- the orchestrator (no event loop, so forking stays safe) --------------------------------


@dataclass
class Result:
    mode: str
    calls: int
    server_cpu_pct: float  # % of one core, whole server process
    client_cpu_pct: float  # % of one core, all load processes together
    delivered: float  # share of expected packets the clients received
    setup_s: float
    # Shares of the expected packets: sent by the clients, received and sent by the server
    # (relay only): where packets go missing when delivery drops.
    path: tuple[float, float, float] = (0.0, 0.0, 0.0)
    # The whole machine's busy CPU (% of one core) minus server and clients: other
    # processes, and the kernel's softirq work for our packets. A high value means the
    # run competed for cores and its delivery figure says little about the server.
    rest_cpu_pct: float = 0.0
    udp_drops: int = 0  # datagrams the kernel dropped machine-wide: a socket buffer was full

    @property
    def per_call_pct(self) -> float:
        return self.server_cpu_pct / self.calls


def machine_busy_s() -> float:
    """CPU seconds all cores spent busy since boot, from /proc/stat (0.0 if unreadable)."""
    try:
        with open("/proc/stat") as stat:
            fields = [int(x) for x in stat.readline().split()[1:]]
    except (OSError, ValueError):
        return 0.0
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields) - idle) / os.sysconf("SC_CLK_TCK")


def udp_receive_drops() -> int:
    """The kernel's count of UDP datagrams dropped for full receive buffers (RcvbufErrors)."""
    try:
        with open("/proc/net/snmp") as snmp:
            rows = [line.split() for line in snmp if line.startswith("Udp:")]
        return int(rows[1][rows[0].index("RcvbufErrors")])
    except (OSError, ValueError, IndexError):
        return 0


def wait_for_quiet(limit_s: float, busy_pct: float = 15.0) -> None:
    """On a shared machine, wait (at most `limit_s`) until others leave the cores alone."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        before = machine_busy_s()
        time.sleep(2.0)
        if 100 * (machine_busy_s() - before) / 2.0 < busy_pct:
            return
    print("  the machine stays busy; measuring anyway", flush=True)


def ask(conn: Connection, message: tuple[Any, ...], timeout: float = 120.0) -> Any:
    conn.send(message)
    if not conn.poll(timeout):
        raise TimeoutError(f"no reply to {message[0]!r} within {timeout} s")
    return conn.recv()


def measure(mode: str, calls: int, clients: int, window_s: float, warmup_s: float) -> Result:
    context = multiprocessing.get_context("fork")
    peers_total = 2 * calls
    shares = [peers_total // clients + (i < peers_total % clients) for i in range(clients)]
    shares = [s for s in shares if s]
    server_end, server_conn = context.Pipe()
    server = context.Process(target=server_main, args=(server_conn, mode), daemon=True)
    server.start()
    loaders = []
    for share in shares:
        mine, theirs = context.Pipe()
        process = context.Process(target=load_main, args=(theirs, share), daemon=True)
        process.start()
        loaders.append((mine, process))
    try:
        started = time.monotonic()
        offers = [sdp for conn, _ in loaders for sdp in ask(conn, ("offer",))[1]]
        pairs = list(zip(offers[0::2], offers[1::2], strict=True))
        answers = [sdp for pair in ask(server_end, ("offers", pairs))[1] for sdp in pair]
        position = 0
        for (conn, _), share in zip(loaders, shares, strict=True):
            ask(conn, ("answers", answers[position : position + share]))
            position += share
        flowing = sum(ask(conn, ("flowing", 30.0))[1] for conn, _ in loaders)
        setup_s = time.monotonic() - started
        if flowing < peers_total:
            print(f"  warning: only {flowing}/{peers_total} peers receive media", flush=True)
        time.sleep(warmup_s)
        busy_before, drops_before = machine_busy_s(), udp_receive_drops()
        for conn in [server_end] + [conn for conn, _ in loaders]:
            ask(conn, ("start",))
        time.sleep(window_s)
        _, server_cpu, wall, server_in, server_out = ask(server_end, ("stop",))
        busy = machine_busy_s() - busy_before
        drops = udp_receive_drops() - drops_before
        received, client_cpu, client_out = 0, 0.0, 0
        for conn, _ in loaders:
            _, counts, cpu, sent = ask(conn, ("stop",))
            received += sum(counts)
            client_cpu += cpu
            client_out += sent
        expected = peers_total * PACKETS_PER_S * wall
        return Result(
            mode,
            calls,
            server_cpu_pct=100 * server_cpu / wall,
            client_cpu_pct=100 * client_cpu / wall,
            delivered=min(1.0, received / expected),
            setup_s=setup_s,
            path=(client_out / expected, server_in / expected, server_out / expected),
            rest_cpu_pct=max(0.0, 100 * (busy - server_cpu - client_cpu) / wall),
            udp_drops=drops,
        )
    finally:
        for conn in [server_end] + [conn for conn, _ in loaders]:
            with contextlib.suppress(OSError, EOFError, TimeoutError):
                ask(conn, ("exit",), timeout=60)
        for process in [server] + [p for _, p in loaders]:
            process.join(10)
            if process.is_alive():
                process.kill()


def describe(result: Result) -> str:
    flag = "" if result.delivered >= 0.99 else "  (< 99 % delivered)"
    return (
        f"{result.mode:>5} N={result.calls:<3} server {result.server_cpu_pct:6.1f} % "
        f"({result.per_call_pct:5.2f} %/call)  clients {result.client_cpu_pct:6.1f} %  "
        f"delivered {100 * result.delivered:6.2f} %  setup {result.setup_s:5.1f} s  "
        f"rest of machine {result.rest_cpu_pct:5.1f} %{flag}"
    ) + (
        "\n      path: clients sent {:.2f} %, server got {:.2f} %, server sent {:.2f} %, "
        "kernel UDP drops {}".format(*(100 * share for share in result.path), result.udp_drops)
        if result.mode == "relay"
        else ""
    )


def bottleneck(result: Result) -> str:
    """Where the packets went missing, from the path counters."""
    sent, got, out = result.path
    if sent < 0.99:
        return (
            f"the load generators sent only {100 * sent:.1f} % of their packets: on this "
            "machine they compete with the server for the same cores"
        )
    if got < sent - 0.01:
        return f"the server took in only {100 * got:.1f} %: it fell behind reading its sockets"
    if out < got - 0.01:
        return f"the server sent on only {100 * out:.1f} %: relay backlog dropped"
    return "packets were lost between the server and the clients"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", default="1,5,10", help="N for relay vs stock (default 1,5,10)")
    parser.add_argument(
        "--ramp", default="10,20,30,40,50,60,80,100", help="relay steps for the capacity search"
    )
    parser.add_argument("--window", type=float, default=8.0, help="measured seconds per run")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds before measuring")
    parser.add_argument("--clients", type=int, default=2, help="load-generating processes")
    parser.add_argument("--budget", type=float, default=280.0, help="stop ramping after (s)")
    parser.add_argument(
        "--quiet-wait",
        type=float,
        default=0.0,
        help="before each run, wait up to this many seconds for other load to stop",
    )
    parser.add_argument("--skip-stock", action="store_true", help="relay only")
    parser.add_argument("--skip-ramp", action="store_true", help="no capacity search")
    args = parser.parse_args()
    began = time.monotonic()

    def run(mode: str, calls: int) -> Result:
        if args.quiet_wait:
            wait_for_quiet(args.quiet_wait)
        return measure(mode, calls, args.clients, args.window, args.warmup)

    print(f"calls_media: {os.cpu_count()} CPUs, window {args.window} s, {args.clients} clients")

    comparison: list[tuple[Result, Result | None]] = []
    for calls in [int(n) for n in args.calls.split(",") if n]:
        relay = run("relay", calls)
        print(describe(relay), flush=True)
        stock = None
        if not args.skip_stock:
            stock = run("stock", calls)
            print(describe(stock), flush=True)
        comparison.append((relay, stock))

    ramp: list[Result] = []
    if not args.skip_ramp:
        for calls in [int(n) for n in args.ramp.split(",") if n]:
            spent = time.monotonic() - began
            last_setup = ramp[-1].setup_s if ramp else 5.0
            if spent + args.window + args.warmup + 3 * last_setup + 10 > args.budget:
                print(f"ramp stops before N={calls}: time budget", flush=True)
                break
            result = run("relay", calls)
            print(describe(result), flush=True)
            if result.delivered < 0.99 and result.rest_cpu_pct > BUSY_MACHINE_PCT:
                print("  the machine was busy with other work: once more", flush=True)
                result = run("relay", calls)
                print(describe(result), flush=True)
            ramp.append(result)
            if result.delivered < 0.99:
                break

    print()
    print("Server CPU per one-to-one call (both directions), % of one core")
    print(f"{'N':>4} {'relay':>8} {'stock':>8} {'relay/stock':>12}  delivered relay/stock")
    for relay, stock in comparison:
        if stock is None:
            print(f"{relay.calls:>4} {relay.per_call_pct:8.2f} {'-':>8} {'-':>12}")
            continue
        ratio = relay.per_call_pct / stock.per_call_pct
        note = "  stock saturated: its CPU/call is a lower bound" if stock.delivered < 0.99 else ""
        print(
            f"{relay.calls:>4} {relay.per_call_pct:8.2f} {stock.per_call_pct:8.2f} "
            f"{ratio:12.2f}  {100 * relay.delivered:.1f} % / {100 * stock.delivered:.1f} %{note}"
        )
    if ramp:
        carried = [r for r in ramp if r.delivered >= 0.99]
        print()
        print("Relay capacity of one server process (>= 99 % of packets delivered)")
        for r in ramp:
            print(f"  {describe(r)}")
        best = max((r.calls for r in carried), default=0)
        print(f"most calls carried in real time: {best}")
        failed = [r for r in ramp if r.delivered < 0.99]
        if failed:
            print(f"at N={failed[0].calls}: {bottleneck(failed[0])}")
        if carried:
            top = max(carried, key=lambda r: r.calls)
            print(
                f"at N={top.calls}: server {top.server_cpu_pct:.0f} % of a core, "
                f"{top.per_call_pct:.2f} %/call -> about {100 / top.per_call_pct:.0f} calls "
                "per fully used core"
            )
    print(f"total time {time.monotonic() - began:.0f} s")


if __name__ == "__main__":
    main()
