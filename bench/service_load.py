"""A real `chorus serve` process under load from light WebRTC callers in other processes.

Shared by bench/ringback.py and bench/hotline.py. The callers are aiortc peer connections
that send a pre-encoded Opus tone and count received RTP packets without decoding, so the
load processes stay cheap and out of the server's measurement: the server's CPU is read
from /proc/<pid>/stat over a window (every thread of the process). Loopback only.
"""

from __future__ import annotations

import asyncio
import collections
import multiprocessing
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import websockets
from aiortc import RTCSessionDescription
from calls_media import Channel, LoadPeer, ask, wait_for_quiet

from voice.media.opus import encode_loop
from voice.webrtc import close_peer_connection, configure_host_candidates

CHORUS = Path(sys.executable).with_name("chorus")
ADMIN_KEY = "bench-admin-key"
PACKETS_PER_S = 50


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tree_cpu_s(pid: int) -> float:
    """CPU seconds of `pid` and every process under it: the live ones (utime + stime) and
    the ones it has reaped (cutime + cstime), so a worker that exits mid-window still counts."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    ticks = sum(int(f) for f in fields[11:15])
    total = ticks / os.sysconf("SC_CLK_TCK")
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/children") as children:
                total += sum(tree_cpu_s(int(child)) for child in children.read().split())
        except OSError:
            continue
    return total


class Server:
    """`chorus serve` in a fresh data dir; stopped (SIGTERM) on exit."""

    def __init__(self, **env: str):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._dir = tempfile.TemporaryDirectory(prefix="chorus-bench-")
        environment = {**os.environ, "CHORUS_ADMIN_KEY": ADMIN_KEY, "CHORUS_LOG_LEVEL": "warning"}
        environment.update({f"CHORUS_{k.upper()}": v for k, v in env.items()})
        self.process = subprocess.Popen(
            [str(CHORUS), "serve", "--port", str(self.port), "--data-dir", self._dir.name],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=environment,
        )
        assert self.process.stdout is not None
        for line in self.process.stdout:
            if line.startswith("chorus: listening on"):
                break
        else:
            raise RuntimeError("the server did not start")
        # Keep reading what it logs: a full pipe would block the server (and its workers,
        # which share its stderr) mid-benchmark. The last lines are kept for a report.
        self.log_tail: collections.deque[str] = collections.deque(maxlen=50)
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.log_tail.append(line)

    def cpu_s(self) -> float:
        """The server's CPU time, its media (and SIP) worker processes included."""
        return tree_cpu_s(self.process.pid)

    def close(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self._dir.cleanup()

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def sign_up(http: httpx.Client, name: str) -> str:
    body = {"username": name, "password": f"{name}-secret"}
    http.post("/v1/users", json=body)
    response = http.post("/v1/sessions", json=body)
    response.raise_for_status()
    return response.json()["token"]


# -- the load process -------------------------------------------------------------------------


async def _callers(
    conn: Connection, url: str, plan: list[tuple[str, str]], online: list[str]
) -> None:
    """`plan`: (caller token, destination) per caller; `online`: tokens whose events socket
    stays open so their calls ring instead of ending `unreachable`."""
    configure_host_candidates("127.0.0.1")
    channel = Channel(conn)
    t = np.arange(PACKETS_PER_S * 960) / 48000
    clip = encode_loop(np.round(np.sin(2 * np.pi * 300 * t) * 3000).astype(np.int16))
    ws_base = url.replace("http", "ws", 1)
    sockets = [await websockets.connect(f"{ws_base}/v1/events?token={tok}") for tok in online]
    peers = [LoadPeer(clip) for _ in plan]
    setups: list[float] = []
    calls: list[tuple[str, str]] = []
    marks: tuple[float, list[int]] = (0.0, [])
    async with httpx.AsyncClient(base_url=url, timeout=60) as http:
        async for message in channel.requests():
            kind = message[0]
            if kind == "call":
                for peer, (token, to) in zip(peers, plan, strict=True):
                    offer = await peer.offer()
                    before = peer.received
                    started = time.perf_counter()
                    response = await http.post(
                        "/v1/calls",
                        json={"to": to, "sdp": offer},
                        headers={"Authorization": f"Bearer {token}"},
                    )
                    response.raise_for_status()
                    created = response.json()
                    calls.append((token, created["call_id"]))
                    await peer.pc.setRemoteDescription(
                        RTCSessionDescription(created["sdp"], "answer")
                    )
                    deadline = time.monotonic() + 20
                    while peer.received == before and time.monotonic() < deadline:
                        await asyncio.sleep(0.002)
                    setups.append(time.perf_counter() - started)
                conn.send(("called", setups))
            elif kind == "start":
                marks = (time.process_time(), [p.received for p in peers])
                conn.send(("ok",))
            elif kind == "stop":
                got = [p.received - b for p, b in zip(peers, marks[1], strict=True)]
                conn.send(("counts", got, time.process_time() - marks[0]))
            elif kind == "exit":
                for token, call_id in calls:
                    await http.post(
                        f"/v1/calls/{call_id}/hangup", headers={"Authorization": f"Bearer {token}"}
                    )
                for peer in peers:
                    await close_peer_connection(peer.pc)
                for ws in sockets:
                    await ws.close()
                conn.send(("bye",))


def _callers_main(
    conn: Connection, url: str, plan: list[tuple[str, str]], online: list[str]
) -> None:
    asyncio.run(_callers(conn, url, plan, online))


@dataclass
class LoadResult:
    streams: int
    server_cpu_pct: float  # % of one core, the whole server process
    delivered: float  # share of the expected packets the callers received
    setup_p50_ms: float
    setup_p95_ms: float

    @property
    def per_stream_pct(self) -> float:
        return self.server_cpu_pct / self.streams


def run_load(
    server: Server,
    plan: list[tuple[str, str]],
    online: list[str],
    *,
    window_s: float = 10.0,
    processes: int = 2,
) -> LoadResult:
    """Places every call of `plan` from `processes` load processes, then measures."""
    ctx = multiprocessing.get_context("spawn")
    chunks = [plan[i::processes] for i in range(processes) if plan[i::processes]]
    pipes, procs = [], []
    for i, chunk in enumerate(chunks):
        parent, child = ctx.Pipe()
        proc = ctx.Process(
            target=_callers_main, args=(child, server.url, chunk, online if i == 0 else [])
        )
        proc.start()
        pipes.append(parent)
        procs.append(proc)
    try:
        setups: list[float] = []
        for pipe in pipes:
            setups += ask(pipe, ("call",), timeout=600)[1]
        time.sleep(2.0)  # let every stream settle
        for pipe in pipes:
            ask(pipe, ("start",))
        cpu0, wall0 = server.cpu_s(), time.monotonic()
        time.sleep(window_s)
        cpu, wall = server.cpu_s() - cpu0, time.monotonic() - wall0
        received = []
        for pipe in pipes:
            received += ask(pipe, ("stop",))[1]
        for pipe in pipes:
            ask(pipe, ("exit",), timeout=300)
    finally:
        for proc in procs:
            proc.join(30)
            if proc.is_alive():
                proc.kill()
    ordered = sorted(setups)
    return LoadResult(
        streams=len(plan),
        server_cpu_pct=100 * cpu / wall,
        delivered=sum(received) / (len(plan) * PACKETS_PER_S * wall),
        setup_p50_ms=1000 * ordered[len(ordered) // 2],
        setup_p95_ms=1000 * ordered[min(len(ordered) - 1, round(0.95 * len(ordered)) - 1)],
    )


def quiet(limit_s: float = 20.0) -> None:
    wait_for_quiet(limit_s)


def admin(server: Server) -> httpx.Client:
    return httpx.Client(
        base_url=server.url, timeout=120, headers={"Authorization": f"Bearer {ADMIN_KEY}"}
    )


def users(server: Server, prefix: str, count: int) -> list[str]:
    with httpx.Client(base_url=server.url, timeout=60) as http:
        return [sign_up(http, f"{prefix}{i}") for i in range(count)]


__all__ = ["Any", "LoadResult", "Server", "admin", "quiet", "run_load", "users"]
