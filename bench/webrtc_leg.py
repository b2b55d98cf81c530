"""Server CPU per WebRTC participant, both directions: WebRtcLeg against aiortc's stock path.

One server process holds N participants, each one peer connection carrying audio both ways.
The participants are light aiortc peers in other processes (bench/calls_media.py's load
generator: they send a pre-encoded Opus sine and count received RTP packets without
decoding), so only the server's work is measured: `time.process_time` of the server process,
all its threads, over a window after every participant is connected and media flows.

- chorus: a `WebRtcLeg` per participant, as a room uses it. In: Opus payloads taken off the
  receiver (voice/webrtc/receive.py) and handed to `on_packet`, not decoded. Out: one 20 ms
  clock (absolute deadlines, like conference/engine.py) encodes the tick's audio once with
  opuslib (mono 32 kb/s, complexity 10, like a room's mix) and gives the same packet to every
  leg's `send_frame`: what a room's listeners get. That one shared encode is counted.
- stock: a plain `RTCPeerConnection` per participant. Out: a track whose `recv()` returns
  the same clock's `av.AudioFrame` (one frame per tick shared by all, as aiortc's MediaRelay
  does), which aiortc encodes for each participant (stereo 96 kb/s through PyAV). In: the
  remote track's `recv()` consumed, so aiortc's jitter buffer and decoder thread decode it.

Packets in and out are counted on the server (chorus: RTP packets; stock: decoded frames in,
frames handed to the encoder out) and at the clients (delivered: share of the 50 packets per
second each participant should get). Goal from the audio-rooms issue: under 2 % of a core
per participant. Loopback only; not run by pytest. The load average and the CPU the rest of
the machine used during each window are printed: on a shared machine they qualify the figures.

    .venv/bin/python bench/webrtc_leg.py                       # N = 10, 30; both paths
    .venv/bin/python bench/webrtc_leg.py --participants 10 --window 5 --paths chorus
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fractions
import multiprocessing
import os
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection

import av
import numpy as np
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from calls_media import Channel, ask, load_main, machine_busy_s, udp_receive_drops

from voice.media.opus import OpusEncoderStream
from voice.webrtc import WebRtcConfig, WebRtcLeg, close_peer_connection, configure_host_candidates

RATE = 48000
FRAME = 960  # samples per 20 ms
TICK_S = FRAME / RATE
PACKETS_PER_S = 50
GOAL_PCT = 2.0  # % of a core per participant, both directions (the audio-rooms issue)
PATHS = ("chorus", "stock")


# -- the server process ----------------------------------------------------------------------


class Clock:
    """One 20 ms clock for every participant, on absolute deadlines (no drift, no per-leg
    timers). Each tick takes the next 20 ms of a 1 s sine loop: for chorus it is encoded once
    and sent to every leg; for stock it becomes one AudioFrame that every track returns."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.loop = asyncio.get_running_loop()
        t = np.arange(PACKETS_PER_S * FRAME) / RATE
        pcm = np.round(np.sin(2 * np.pi * 440 * t) * 8000).astype(np.int16)
        self.pcm = pcm.reshape(PACKETS_PER_S, FRAME)
        self.encoder = OpusEncoderStream(bitrate=32000, complexity=10)
        self.encode_cpu_s = 0.0  # thread CPU spent in the shared encode (chorus)
        self.legs: list[WebRtcLeg] = []
        self.tick = 0
        self.late_ticks = 0
        self._next: asyncio.Future[av.AudioFrame] = self.loop.create_future()
        self._start = self.loop.time()
        self._handle = self.loop.call_at(self._start + TICK_S, self._on_tick)

    def next_frame(self) -> asyncio.Future[av.AudioFrame]:
        return self._next

    def _on_tick(self) -> None:
        self.tick += 1
        pcm = self.pcm[self.tick % PACKETS_PER_S]
        if self.path == "chorus":
            before = time.thread_time()
            payload = self.encoder.encode(pcm)
            self.encode_cpu_s += time.thread_time() - before
            for leg in self.legs:
                leg.send_frame(payload, self.tick)
        else:
            frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
            frame.sample_rate = RATE
            frame.pts = self.tick * FRAME
            frame.time_base = fractions.Fraction(1, RATE)
            waiting, self._next = self._next, self.loop.create_future()
            waiting.set_result(frame)
        deadline = self._start + (self.tick + 1) * TICK_S
        now = self.loop.time()
        if deadline < now:  # more than a tick behind: skip ahead rather than burst
            self.late_ticks += 1
            skipped = int((now - deadline) / TICK_S) + 1
            self.tick += skipped
            deadline += skipped * TICK_S
        self._handle = self.loop.call_at(deadline, self._on_tick)

    def stop(self) -> None:
        self._handle.cancel()


class ClockTrack(MediaStreamTrack):
    """aiortc's stock way to send audio: a track returning PCM frames that aiortc encodes."""

    kind = "audio"

    def __init__(self, clock: Clock) -> None:
        super().__init__()
        self.clock = clock
        self.frames = 0

    async def recv(self) -> av.AudioFrame:  # type: ignore[override]
        if self.readyState != "live":
            raise MediaStreamError
        frame = await self.clock.next_frame()
        self.frames += 1
        return frame


class StockParticipant:
    """A server-side RTCPeerConnection with aiortc's own encode (out) and decode (in)."""

    def __init__(self, clock: Clock) -> None:
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.track = ClockTrack(clock)
        self.received = 0
        self.consumer: asyncio.Task[None] | None = None

    async def answer(self, offer: str) -> str:
        await self.pc.setRemoteDescription(RTCSessionDescription(offer, "offer"))
        self.pc.addTrack(self.track)
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        remote = self.pc.getTransceivers()[0].receiver.track
        self.consumer = asyncio.create_task(self._consume(remote))
        return self.pc.localDescription.sdp

    async def _consume(self, track: MediaStreamTrack) -> None:
        with contextlib.suppress(MediaStreamError):
            while True:
                await track.recv()
                self.received += 1

    async def close(self) -> None:
        if self.consumer is not None:
            self.consumer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.consumer
        self.track.stop()
        await close_peer_connection(self.pc)


def thread_count() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("Threads:"):
                return int(line.split()[1])
    return 0


async def serve(conn: Connection, path: str) -> None:
    configure_host_candidates("127.0.0.1")
    channel = Channel(conn)
    clock = Clock(path)
    config = WebRtcConfig()
    stock: list[StockParticipant] = []
    marks = (0.0, 0.0, 0.0, 0, 0)

    def on_packet(seq: int, timestamp: int, payload: bytes, level: int | None, at: float) -> None:
        pass  # a room pushes into the participant's jitter buffer here

    def counters() -> tuple[int, int]:
        if path == "chorus":
            return (
                sum(leg.packets_received for leg in clock.legs),
                sum(leg.packets_sent for leg in clock.legs),
            )
        return sum(p.received for p in stock), sum(p.track.frames for p in stock)

    async for message in channel.requests():
        kind = message[0]
        if kind == "offers":
            answers = []
            for offer in message[1]:
                if path == "chorus":
                    label = f"p{len(clock.legs)}"
                    leg = await WebRtcLeg.accept(offer, config=config, label=label)
                    leg.on_packet = on_packet
                    clock.legs.append(leg)
                    answers.append(leg.answer_sdp)
                else:
                    participant = StockParticipant(clock)
                    answers.append(await participant.answer(offer))
                    stock.append(participant)
            conn.send(("answers", answers))
        elif kind == "start":
            marks = (time.process_time(), time.monotonic(), clock.encode_cpu_s, *counters())
            clock.late_ticks = 0
            conn.send(("ok",))
        elif kind == "stop":
            received, sent = counters()
            conn.send(
                (
                    "cpu",
                    time.process_time() - marks[0],
                    time.monotonic() - marks[1],
                    clock.encode_cpu_s - marks[2],
                    received - marks[3],
                    sent - marks[4],
                    thread_count(),
                    clock.late_ticks,
                )
            )
        elif kind == "exit":
            clock.stop()
            for leg in clock.legs:
                await leg.close()
            for participant in stock:
                await participant.close()
            conn.send(("bye",))


def server_main(conn: Connection, path: str) -> None:
    asyncio.run(serve(conn, path))


# -- the orchestrator (no event loop, so forking stays safe) --------------------------------


@dataclass
class Result:
    path: str
    participants: int
    wall_s: float
    server_cpu_s: float
    encode_cpu_s: float  # chorus: the one shared encode per tick (part of server_cpu_s)
    packets_in: int  # at the server, in the window
    packets_out: int
    delivered: float  # share of the expected packets the clients received
    client_cpu_pct: float
    rest_cpu_pct: float  # the machine's busy CPU minus server and clients (% of a core)
    threads: int
    late_ticks: int
    udp_drops: int
    setup_s: float
    flowing: int

    @property
    def cpu_pct(self) -> float:
        return 100 * self.server_cpu_s / self.wall_s

    @property
    def per_participant_pct(self) -> float:
        return self.cpu_pct / self.participants

    @property
    def us_per_packet(self) -> float:
        packets = self.packets_in + self.packets_out
        return 1e6 * self.server_cpu_s / packets if packets else float("nan")

    @property
    def in_share(self) -> float:
        return self.packets_in / (self.participants * PACKETS_PER_S * self.wall_s)

    @property
    def out_share(self) -> float:
        return self.packets_out / (self.participants * PACKETS_PER_S * self.wall_s)


def measure(path: str, participants: int, clients: int, window_s: float, warmup_s: float) -> Result:
    context = multiprocessing.get_context("fork")
    shares = [participants // clients + (i < participants % clients) for i in range(clients)]
    shares = [s for s in shares if s]
    server_end, server_conn = context.Pipe()
    server = context.Process(target=server_main, args=(server_conn, path), daemon=True)
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
        answers = ask(server_end, ("offers", offers))[1]
        position = 0
        for (conn, _), share in zip(loaders, shares, strict=True):
            ask(conn, ("answers", answers[position : position + share]))
            position += share
        flowing = sum(ask(conn, ("flowing", 30.0))[1] for conn, _ in loaders)
        setup_s = time.monotonic() - started
        if flowing < participants:
            print(f"  warning: only {flowing}/{participants} participants receive media")
        time.sleep(warmup_s)
        busy_before, drops_before = machine_busy_s(), udp_receive_drops()
        for conn in [server_end] + [conn for conn, _ in loaders]:
            ask(conn, ("start",))
        time.sleep(window_s)
        _, cpu, wall, encode, got, sent, threads, late = ask(server_end, ("stop",))
        busy = machine_busy_s() - busy_before
        drops = udp_receive_drops() - drops_before
        received, client_cpu = 0, 0.0
        for conn, _ in loaders:
            _, counts, loader_cpu, _ = ask(conn, ("stop",))
            received += sum(counts)
            client_cpu += loader_cpu
        return Result(
            path,
            participants,
            wall_s=wall,
            server_cpu_s=cpu,
            encode_cpu_s=encode,
            packets_in=got,
            packets_out=sent,
            delivered=min(1.0, received / (participants * PACKETS_PER_S * wall)),
            client_cpu_pct=100 * client_cpu / wall,
            rest_cpu_pct=max(0.0, 100 * (busy - cpu - client_cpu) / wall),
            threads=threads,
            late_ticks=late,
            udp_drops=drops,
            setup_s=setup_s,
            flowing=flowing,
        )
    finally:
        for conn in [server_end] + [conn for conn, _ in loaders]:
            with contextlib.suppress(OSError, EOFError, TimeoutError):
                ask(conn, ("exit",), timeout=60)
        for process in [server] + [p for _, p in loaders]:
            process.join(10)
            if process.is_alive():
                process.kill()


def describe(r: Result) -> str:
    return (
        f"  {r.path:>6} N={r.participants:<3} server {r.cpu_pct:6.1f} % "
        f"({r.per_participant_pct:5.2f} %/participant, {r.us_per_packet:5.0f} µs/packet), "
        f"in {100 * r.in_share:.1f} % out {100 * r.out_share:.1f} % "
        f"delivered {100 * r.delivered:.1f} %, {r.threads} threads, setup {r.setup_s:.1f} s, "
        f"late ticks {r.late_ticks}, shared encode {100 * r.encode_cpu_s / r.wall_s:.1f} %; "
        f"clients {r.client_cpu_pct:.0f} %, rest of machine {r.rest_cpu_pct:.0f} %, "
        f"load {os.getloadavg()[0]:.2f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--participants", default="10,30", help="N to measure (default 10,30)")
    parser.add_argument("--paths", default="chorus,stock", help="chorus, stock or both")
    parser.add_argument("--window", type=float, default=10.0, help="measured seconds per run")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds before measuring")
    parser.add_argument("--clients", type=int, default=2, help="load-generating processes")
    args = parser.parse_args()
    paths = [p for p in args.paths.split(",") if p]
    if unknown := set(paths) - set(PATHS):
        parser.error(f"unknown path(s): {', '.join(sorted(unknown))}")
    counts = [int(n) for n in args.participants.split(",") if n]
    began = time.monotonic()
    load = os.getloadavg()
    print(
        f"webrtc_leg: {os.cpu_count()} CPUs, load average {load[0]:.2f} {load[1]:.2f} "
        f"{load[2]:.2f}, window {args.window:g} s, {args.clients} client processes",
        flush=True,
    )

    results: dict[tuple[str, int], Result] = {}
    for n in counts:
        for path in paths:
            print(f"{path}, {n} participants...", flush=True)
            result = measure(path, n, args.clients, args.window, args.warmup)
            print(describe(result), flush=True)
            results[path, n] = result

    print()
    print("Server CPU per WebRTC participant (receive + send), % of one core")
    print(
        f"{'path':>6} {'N':>4} {'CPU %':>7} {'%/part':>7} {'µs/pkt':>7} "
        f"{'pkts in':>8} {'pkts out':>8} {'deliv %':>8} {'threads':>7}"
    )
    for (path, n), r in results.items():
        print(
            f"{path:>6} {n:>4} {r.cpu_pct:7.1f} {r.per_participant_pct:7.2f} "
            f"{r.us_per_packet:7.0f} {r.packets_in:>8} {r.packets_out:>8} "
            f"{100 * r.delivered:8.1f} {r.threads:>7}"
        )
    print(
        f"(window {args.window:g} s; pkts = server side; deliv = share of 50 packets/s per "
        "participant that the clients received)"
    )
    if any(r.encode_cpu_s for r in results.values()):
        encode_pct = max(100 * r.encode_cpu_s / r.wall_s for r in results.values())
        print(f"chorus includes one shared Opus encode per tick: {encode_pct:.1f} % of a core")

    print()
    print(
        f"{'N':>4} {'chorus %/part':>14} {'stock %/part':>13} {'chorus/stock':>13}  "
        f"goal < {GOAL_PCT:g} %/participant"
    )
    for n in counts:
        chorus, stock = results.get(("chorus", n)), results.get(("stock", n))
        ratio, note = "-", ""
        if chorus and stock:
            ratio = f"{chorus.per_participant_pct / stock.per_participant_pct:.2f}"
            if stock.delivered < 0.99:
                note = "  (stock fell behind: its CPU is a lower bound, the ratio an upper one)"
        goal = "-"
        if chorus:
            met = chorus.per_participant_pct < GOAL_PCT and chorus.delivered >= 0.99
            goal = "met" if met else "NOT met"
        print(
            f"{n:>4} {chorus.per_participant_pct if chorus else float('nan'):14.2f} "
            f"{stock.per_participant_pct if stock else float('nan'):13.2f} {ratio:>13}  "
            f"{goal}{note}"
        )
    load = os.getloadavg()
    print(
        f"load average at the end {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; "
        f"total time {time.monotonic() - began:.0f} s"
    )


if __name__ == "__main__":
    main()
