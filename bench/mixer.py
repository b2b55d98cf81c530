#!/usr/bin/env python3
"""Chorus audio rooms against Janus AudioBridge: identical plain-RTP load, side by side.

For each workload both servers are started fresh, one after the other (alternating which
goes first on repeats), and driven by the same generator (adapted from
../shared/anchors/janus/rtp_load.py): N plain-RTP Opus participants on 127.0.0.1, each
sending one pre-encoded 20 ms frame (48 kHz mono, 32 kb/s) every 20 ms from the socket it
receives the mix on. Talkers send a distinct tone each; the others send encoded digital
silence (no DTX, no audio-level extension: the server has to find out by itself that they
are quiet), or with --silence dtx one DTX frame per 400 ms.

Measured over the window after a warm-up: the server process's CPU time (utime + stime of
all its threads, /proc) per participant per second, the mixed frames each participant got
(frames delivered, % of 50 per second), sequence gaps, and a mix check (decode 1 s that a
listener got; count the talkers' tones in it).

Identical work: Chorus runs with the encoder settings Janus uses (complexity 4, VOIP, no DTX)
unless --chorus-defaults. Chorus mixes the K loudest talkers (K=3; "W1 K=all" mixes all,
like Janus). Workloads (from the issue): W1 10 talking; W1all the same with K=all; W2 10
participants, 2 talking; W3 50 participants, 3 talking; then an N sweep with 3 talking.
--max-room searches the largest room each server keeps in real time with the server pinned
to one core (CPU 1) and the generator to the other (CPU 0).

Janus: Debian's janus (apt-get install janus), started like the anchor's start_janus.sh with
the anchor's config folder (--anchor); if it cannot run, Chorus is measured alone and the
table says why.

  .venv/bin/python bench/mixer.py                  # W1, W1all, W2, W3 and N = 10, 30, 50, 100
  .venv/bin/python bench/mixer.py --workloads W3 --duration 10 --ns ''
  .venv/bin/python bench/mixer.py --max-room --workloads '' --ns ''
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import random
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
import opuslib
from service_load import tree_cpu_s

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_ANCHOR = ROOT.parent / "shared" / "anchors" / "janus"
LOOPBACK = "127.0.0.1"
FRAME = 960
PT = 111
ADMIN_KEY = "bench-admin-key"
JANUS_URL = "http://127.0.0.1:8088/janus"


# --------------------------------------------------------------------------- /proc


def proc_cpu_s(pid: int) -> float:
    """The server's CPU time with its worker processes (Chorus mixes in a media worker)."""
    return tree_cpu_s(pid)


def machine() -> tuple[int, int]:
    with open("/proc/stat") as f:
        values = [int(x) for x in f.readline().split()[1:]]
    return sum(values), values[3] + values[4]


def self_cpu_s() -> float:
    return time.process_time()


# --------------------------------------------------------------------------- the load


def tone_freq(i: int) -> int:
    return 300 + 20 * i


def pre_encode(freq: float, amp: float, frames: int = 50) -> list[bytes]:
    encoder = opuslib.Encoder(48000, 1, opuslib.APPLICATION_VOIP)
    encoder.bitrate = 32000
    encoder.complexity = 5
    t = np.arange(frames * FRAME) / 48000
    pcm = np.round(amp * np.sin(2 * np.pi * freq * t)).astype("<i2")
    # Twice round the loop so the kept frames follow on from each other (no start-up state).
    out = [encoder.encode(pcm[k * FRAME : (k + 1) * FRAME].tobytes(), FRAME) for k in range(frames)]
    out = [encoder.encode(pcm[k * FRAME : (k + 1) * FRAME].tobytes(), FRAME) for k in range(frames)]
    return out


class Participant:
    __slots__ = (
        "dtx_every",
        "ext_seq",
        "fi",
        "frames",
        "idx",
        "keep",
        "kept",
        "port",
        "rx",
        "seq",
        "sock",
        "ssrc",
        "talking",
        "ts",
        "tx",
    )

    def __init__(self, idx: int, frames: list[bytes], talking: bool, dtx_every: int = 0):
        self.idx = idx
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        self.sock.bind((LOOPBACK, 0))
        self.sock.setblocking(False)
        self.port = self.sock.getsockname()[1]
        self.frames = frames
        self.talking = talking
        self.dtx_every = dtx_every
        self.fi = 0
        self.ssrc = random.getrandbits(32)
        self.seq = random.getrandbits(16)
        self.ts = random.getrandbits(32)
        self.tx = self.rx = 0
        self.ext_seq: int | None = None
        self.keep = False
        self.kept: list[bytes] = []


@dataclass
class GenStats:
    ticks: int = 0
    late: int = 0
    max_late_s: float = 0.0
    errors: int = 0


async def media_loop(parts: list[Participant], stop: asyncio.Event, stats: GenStats, slots=4):
    """One frame per participant per 20 ms, spread over `slots` sub-ticks; drain receives."""
    loop = asyncio.get_running_loop()
    groups = [parts[s::slots] for s in range(slots)]
    sub = 0.02 / slots
    buf = bytearray(2048)
    pack = struct.Struct("!BBHII").pack
    t0 = loop.time() + 0.05
    k = 0
    while not stop.is_set():
        deadline = t0 + k * sub
        now = loop.time()
        if deadline > now:
            await asyncio.sleep(deadline - now)
        else:
            late = now - deadline
            stats.max_late_s = max(stats.max_late_s, late)
            if late > 0.010:
                stats.late += 1
            if late > 1.0:
                t0 = now - k * sub
        stats.ticks += 1
        for p in groups[k % slots]:
            frame = p.frames[p.fi]
            send = not p.dtx_every or p.fi % p.dtx_every == 0
            if send:
                try:
                    p.sock.send(pack(0x80, PT, p.seq & 0xFFFF, p.ts & 0xFFFFFFFF, p.ssrc) + frame)
                    p.tx += 1
                except OSError:
                    stats.errors += 1
                p.seq += 1
            p.ts += FRAME
            p.fi = (p.fi + 1) % len(p.frames)
            sock = p.sock
            while True:
                try:
                    n = sock.recv_into(buf)
                except (BlockingIOError, InterruptedError):
                    break
                except OSError:
                    stats.errors += 1
                    break
                if n < 12 or 200 <= buf[1] <= 204:
                    continue  # RTCP
                s = (buf[2] << 8) | buf[3]
                if p.ext_seq is None:
                    p.ext_seq = s
                else:
                    d = (s - (p.ext_seq & 0xFFFF)) & 0xFFFF
                    if d < 0x8000:
                        p.ext_seq += d
                p.rx += 1
                if p.keep:
                    p.kept.append(bytes(buf[12:n]))
                    if len(p.kept) > 50:
                        del p.kept[0]
        k += 1


def mix_check(p: Participant, talkers: int) -> int:
    """How many talkers' tones are in the last second `p` heard (its own excluded)."""
    if len(p.kept) < 50:
        return -1
    decoder = opuslib.Decoder(48000, 1)
    pcm = b"".join(decoder.decode(payload, FRAME) for payload in p.kept[-50:])
    x = np.frombuffer(pcm, dtype="<i2").astype(np.float64)[-48000:]
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    floor = float(np.median(spec[200:4000])) + 1e-9
    heard = 0
    for i in range(talkers):
        if i == p.idx:
            continue
        f = tone_freq(i) * len(x) // 48000
        if spec[f - 1 : f + 2].max() > 30 * floor:
            heard += 1
    return heard


# --------------------------------------------------------------------------- servers


class Skip(Exception):
    """The server cannot run here; the message says why."""


class ChorusServer:
    name = "chorus"

    def __init__(self, args, k: int | None) -> None:
        self.args = args
        self.k = k
        self.proc: subprocess.Popen | None = None
        self.tmp = Path(tempfile.mkdtemp(prefix="chorus-bench-"))
        self.room_id = ""
        self.http: httpx.AsyncClient | None = None
        self.base = ""

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    async def start(self, cpu: int | None) -> None:
        port = _free_port()
        env = dict(os.environ)
        env.update(
            CHORUS_ADMIN_KEY=ADMIN_KEY,
            CHORUS_LOG_LEVEL="warning",
            CHORUS_ROOM_MAX_PARTICIPANTS="5000",
            CHORUS_SAMPLE_HOTLINES="false",
        )
        if not self.args.chorus_defaults:
            env.update(CHORUS_MIX_COMPLEXITY=str(self.args.complexity), CHORUS_MIX_DTX="false")
        command = [str(ROOT / ".venv" / "bin" / "chorus"), "serve", "--host", LOOPBACK]
        command += ["--port", str(port), "--data-dir", str(self.tmp / "data")]
        if cpu is not None:
            command = ["taskset", "-c", str(cpu), *command]
        self.proc = _spawn(command, self.tmp / "server.log", env)
        self.base = f"http://{LOOPBACK}:{port}"
        self.http = httpx.AsyncClient(
            base_url=self.base, headers={"Authorization": f"Bearer {ADMIN_KEY}"}, timeout=30
        )
        for _ in range(200):
            with contextlib.suppress(httpx.HTTPError):
                if (await self.http.get("/healthz")).status_code == 200:
                    break
            if self.proc.poll() is not None:
                raise Skip(f"chorus exited: {(self.tmp / 'server.log').read_text()[-500:]}")
            await asyncio.sleep(0.1)
        body = {"max_speakers": "all" if self.k is None else self.k, "max_participants": 5000}
        response = await self.http.post("/v1/rooms", json=body)
        response.raise_for_status()
        self.room_id = response.json()["room_id"]

    async def join(self, parts: list[Participant]) -> None:
        assert self.http is not None
        sem = asyncio.Semaphore(8)

        async def one(p: Participant) -> None:
            async with sem:
                body = {"host": LOOPBACK, "port": p.port, "codec": "opus", "payload_type": PT}
                response = await self.http.post(f"/v1/rooms/{self.room_id}/rtp", json=body)
                response.raise_for_status()
                p.sock.connect((response.json()["server_host"], response.json()["server_port"]))

        await asyncio.gather(*[one(p) for p in parts])

    def threads(self) -> int:
        return len(os.listdir(f"/proc/{self.pid}/task"))

    async def stop(self) -> None:
        if self.http is not None:
            with contextlib.suppress(httpx.HTTPError):
                await self.http.delete(f"/v1/rooms/{self.room_id}")
            await self.http.aclose()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.to_thread(self.proc.wait, 20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.tmp, ignore_errors=True)


class JanusServer:
    name = "janus"

    def __init__(self, args) -> None:
        self.args = args
        self.anchor = Path(args.anchor)
        self.proc: subprocess.Popen | None = None
        self.tmp = Path(tempfile.mkdtemp(prefix="janus-bench-"))
        self.http: httpx.AsyncClient | None = None
        self.session = 0
        self.room = random.randint(1000, 9999)
        self.pending: dict[str, asyncio.Future] = {}
        self.poller: asyncio.Task | None = None
        self.handles: list[int] = []

    @staticmethod
    def available(anchor: Path) -> str | None:
        """None if Janus can run here, else why not."""
        if shutil.which("janus") is None:
            return "the janus binary is not installed (apt-get install janus)"
        if not (anchor / "conf" / "janus.jcfg").exists():
            return f"no Janus benchmark config in {anchor}/conf"
        with socket.socket() as s:
            if s.connect_ex((LOOPBACK, 8088)) == 0:
                return "something already listens on 127.0.0.1:8088 (another Janus?)"
        return None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    async def start(self, cpu: int | None) -> None:
        conf = self.anchor / "conf"
        # The anchor's start_janus.sh, with our own run folder (and optionally one CPU).
        command = ["janus", "-F", str(conf), "-C", str(conf / "janus.jcfg")]
        command += ["-L", str(self.tmp / "janus.log"), "-N", "-o"]
        if cpu is not None:
            command = ["taskset", "-c", str(cpu), *command]
        self.proc = _spawn(command, self.tmp / "janus.stdout", None)
        self.http = httpx.AsyncClient(timeout=httpx.Timeout(45.0))
        for _ in range(100):
            with contextlib.suppress(httpx.HTTPError):
                if (await self.http.get(f"{JANUS_URL}/info")).status_code == 200:
                    break
            if self.proc.poll() is not None:
                raise Skip(
                    "janus exited at start: " + (self.tmp / "janus.stdout").read_text()[-300:]
                )
            await asyncio.sleep(0.2)
        else:
            raise Skip("janus did not answer on 127.0.0.1:8088 within 20 s")
        reply = await self._post(JANUS_URL, {"janus": "create"})
        self.session = reply["data"]["id"]
        self.poller = asyncio.create_task(self._poll())

    async def _post(self, url: str, body: dict) -> dict:
        assert self.http is not None
        body = {**body, "transaction": body.get("transaction") or _tx()}
        response = await self.http.post(url, json=body)
        return response.json()

    async def _poll(self) -> None:
        assert self.http is not None
        url = f"{JANUS_URL}/{self.session}?maxev=200"
        while True:
            try:
                response = await self.http.get(url)
                data = response.json()
            except asyncio.CancelledError:
                raise
            except Exception:
                await asyncio.sleep(0.2)
                continue
            for event in data if isinstance(data, list) else [data]:
                future = self.pending.get(event.get("transaction", ""))
                if future is not None and not future.done() and event.get("janus") == "event":
                    future.set_result(event)

    async def _attach(self) -> int:
        reply = await self._post(
            f"{JANUS_URL}/{self.session}", {"janus": "attach", "plugin": "janus.plugin.audiobridge"}
        )
        return reply["data"]["id"]

    async def join(self, parts: list[Participant]) -> None:
        sem = asyncio.Semaphore(8)
        self.handles = list(await asyncio.gather(*[self._attach() for _ in parts]))
        create = {
            "request": "create",
            "room": self.room,
            "sampling_rate": 48000,
            "allow_rtp_participants": True,
            "audiolevel_ext": False,
            "is_private": True,
            "permanent": False,
        }
        reply = await self._post(
            f"{JANUS_URL}/{self.session}/{self.handles[0]}", {"janus": "message", "body": create}
        )
        if reply.get("plugindata", {}).get("data", {}).get("audiobridge") != "created":
            raise Skip(f"janus could not create a room: {reply}")

        async def one(p: Participant, handle: int) -> None:
            async with sem:
                tx = _tx()
                future = asyncio.get_running_loop().create_future()
                self.pending[tx] = future
                body = {
                    "request": "join",
                    "room": self.room,
                    "display": f"p{p.idx}",
                    "rtp": {"ip": LOOPBACK, "port": p.port, "payload_type": PT},
                }
                if self.args.complexity is not None:
                    body["quality"] = self.args.complexity
                await self._post(
                    f"{JANUS_URL}/{self.session}/{handle}",
                    {"janus": "message", "body": body, "transaction": tx},
                )
                event = await asyncio.wait_for(future, 20)
                data = event["plugindata"]["data"]
                p.sock.connect((data["rtp"]["ip"], data["rtp"]["port"]))

        await asyncio.gather(*[one(p, h) for p, h in zip(parts, self.handles, strict=True)])

    def threads(self) -> int:
        return len(os.listdir(f"/proc/{self.pid}/task"))

    async def stop(self) -> None:
        if self.http is not None and self.session:
            with contextlib.suppress(Exception):
                await self._post(
                    f"{JANUS_URL}/{self.session}/{self.handles[0]}",
                    {"janus": "message", "body": {"request": "destroy", "room": self.room}},
                )
            with contextlib.suppress(Exception):
                await self._post(f"{JANUS_URL}/{self.session}", {"janus": "destroy"})
        if self.poller is not None:
            self.poller.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.poller
        if self.http is not None:
            await self.http.aclose()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.to_thread(self.proc.wait, 10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.tmp, ignore_errors=True)


def _tx() -> str:
    return f"{random.getrandbits(64):016x}"


def _spawn(command: list[str], log: Path, env: dict[str, str] | None) -> subprocess.Popen:
    with open(log, "wb") as out:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)


def _save(path: str, results: list[Result]) -> None:
    with open(path, "a") as f:
        for r in results:
            f.write(json.dumps(r.__dict__) + "\n")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------- one run


@dataclass
class Result:
    server: str
    workload: str
    n: int
    talkers: int
    k: str
    cpu_pct: float = 0.0
    ms_per_participant_s: float = 0.0
    delivered_pct: float = 0.0
    lost: int = 0
    mix_pps_min: float = 0.0
    heard: int = -1
    gen_late: int = 0
    gen_cpu_pct: float = 0.0
    busy_pct: float = 0.0
    threads: int = 0
    setup_s: float = 0.0
    error: str = ""
    extra: dict = field(default_factory=dict)


async def run_one(server, workload: str, n: int, talkers: int, k: str, args, cpu=None) -> Result:
    result = Result(server.name, workload, n, talkers, k)
    amp = min(8000.0, 0.3 * 32767 / math.sqrt(max(1, talkers)))
    silence = pre_encode(0.0, 0.0)
    parts = []
    for i in range(n):
        talking = i < talkers
        frames = pre_encode(tone_freq(i), amp) if talking else silence
        dtx_every = 20 if (not talking and args.silence == "dtx") else 0
        if dtx_every:
            frames = [b"\x08"] * 50  # a DTX frame (TOC only) every 400 ms
        parts.append(Participant(i, frames, talking, dtx_every))
    listener = parts[-1] if n > talkers else parts[0]
    listener.keep = True
    started = time.perf_counter()
    try:
        await server.start(cpu)
        await server.join(parts)
        result.setup_s = round(time.perf_counter() - started, 2)
        if cpu is not None:
            os.sched_setaffinity(0, {0})
        stats = GenStats()
        stop = asyncio.Event()
        media = asyncio.create_task(media_loop(parts, stop, stats))
        await asyncio.sleep(args.warmup)
        w0, c0, g0, m0 = time.monotonic(), proc_cpu_s(server.pid), self_cpu_s(), machine()
        seq0 = [p.ext_seq for p in parts]
        rx0 = [p.rx for p in parts]
        late0 = stats.late
        await asyncio.sleep(args.duration)
        w1, c1, g1, m1 = time.monotonic(), proc_cpu_s(server.pid), self_cpu_s(), machine()
        seq1 = [p.ext_seq for p in parts]
        rx1 = [p.rx for p in parts]
        result.threads = server.threads()
        stop.set()
        await media
        wall = w1 - w0
        cpu_s = c1 - c0
        result.cpu_pct = round(100 * cpu_s / wall, 1)
        result.ms_per_participant_s = round(1000 * cpu_s / wall / n, 3)
        expected = n * wall * 50
        got = sum(b - a for a, b in zip(rx0, rx1, strict=True))
        result.delivered_pct = round(100 * got / expected, 2)
        pps = []
        for a, b, ra, rb in zip(seq0, seq1, rx0, rx1, strict=True):
            if a is None or b is None:
                pps.append(0.0)
                continue
            result.lost += max(0, (b - a) - (rb - ra))
            pps.append((b - a) / wall)
        result.mix_pps_min = round(min(pps), 2)
        result.heard = mix_check(listener, talkers)
        result.gen_late = stats.late - late0
        result.gen_cpu_pct = round(100 * (g1 - g0) / wall, 1)
        total, idle = m1[0] - m0[0], m1[1] - m0[1]
        result.busy_pct = round(100 * (1 - idle / max(1, total)), 1)
    except Skip as exc:
        result.error = str(exc)
    except Exception as exc:  # a failed run is reported, the others still run
        result.error = f"{type(exc).__name__}: {exc}"
    finally:
        with contextlib.suppress(Exception):
            await server.stop()
        for p in parts:
            p.sock.close()
        if cpu is not None:
            os.sched_setaffinity(0, set(range(os.cpu_count() or 1)))
    return result


# --------------------------------------------------------------------------- the report

WORKLOADS = {  # name: (N, talkers, K, goal Chorus/Janus)
    "W1": (10, 10, "3", 0.6),
    "W1all": (10, 10, "all", 1.0),
    "W2": (10, 2, "3", 0.35),
    "W3": (50, 3, "3", 0.15),
}


def _k(k: str) -> int | None:
    return None if k == "all" else int(k)


def print_rows(rows: list[tuple[str, Result, Result | None, float | None]]) -> None:
    head = (
        f"{'workload':<10}{'N':>5}{'talk':>5}{'K':>5} | {'Chorus ms/p/s':>13}{'deliv%':>8}"
        f"{'heard':>6} | {'Janus ms/p/s':>12}{'deliv%':>8}{'heard':>6} | {'ratio':>6}{'goal':>6}"
    )
    print(head)
    print("-" * len(head))
    for name, c, j, goal in rows:
        cj = f"{c.ms_per_participant_s:>13.2f}{c.delivered_pct:>8.1f}{c.heard:>6}"
        if c.error:
            cj = f"{'error':>13}{'':>8}{'':>6}"
        if j is None or j.error:
            jj = f"{'-':>12}{'':>8}{'':>6}"
            ratio = "-"
        else:
            jj = f"{j.ms_per_participant_s:>12.2f}{j.delivered_pct:>8.1f}{j.heard:>6}"
            ratio = f"{c.ms_per_participant_s / j.ms_per_participant_s:.3f}" if not c.error else "-"
        g = f"{goal:.2f}" if goal else ""
        print(f"{name:<10}{c.n:>5}{c.talkers:>5}{c.k:>5} | {cj} | {jj} | {ratio:>6}{g:>6}")


async def main_async(args) -> int:
    anchor = Path(args.anchor)
    why_not = None if args.no_janus else JanusServer.available(anchor)
    if args.no_janus:
        why_not = "--no-janus"
    if why_not:
        print(f"Janus not measured: {why_not}", flush=True)
    plan: list[tuple[str, int, int, str, float | None]] = []
    for name in [w for w in args.workloads.split(",") if w]:
        n, talkers, k, goal = WORKLOADS[name]
        plan.append((name, n, talkers, k, goal))
    for n in [int(x) for x in args.ns.split(",") if x]:
        plan.append((f"N={n}", n, min(3, n), "3", None))
    results: list[Result] = []
    rows = []
    for repeat in range(args.repeats):
        for name, n, talkers, k, goal in plan:
            order = ["chorus", "janus"] if repeat % 2 == 0 else ["janus", "chorus"]
            got: dict[str, Result] = {}
            for which in order:
                if which == "janus" and why_not:
                    continue
                server = ChorusServer(args, _k(k)) if which == "chorus" else JanusServer(args)
                r = await run_one(server, name, n, talkers, k, args)
                got[which] = r
                results.append(r)
                print(
                    f"  {which:<6} {name:<6} N={n:<4} cpu {r.cpu_pct:6.1f}% "
                    f"{r.ms_per_participant_s:7.3f} ms/p/s  delivered {r.delivered_pct:6.2f}% "
                    f"lost {r.lost} heard {r.heard} gen_late {r.gen_late} busy {r.busy_pct}% "
                    f"threads {r.threads} {r.error}",
                    flush=True,
                )
                await asyncio.sleep(1.0)
            rows.append((name, got["chorus"], got.get("janus"), goal))
    print()
    print("CPU per participant per second of the server process (ms), identical plain-RTP load")
    print_rows(rows)
    if args.max_room:
        print()
        await max_room(args, why_not, results)
    if args.out:
        _save(args.out, results)
    return 0


def realtime(r: Result) -> bool:
    return not r.error and r.delivered_pct >= 99.0 and r.mix_pps_min >= 49.0 and r.cpu_pct < 97


async def max_room(args, why_not, results) -> None:
    """Grow a W3-like room (3 talkers) with the server pinned to CPU 1 and the generator to
    CPU 0, until the server misses real time (or the steps run out).

    On a shared machine other processes run on CPU 1 too, and a single-threaded server gets
    only its fair share of it: so each step also reports the room size its own CPU cost
    projects to 90 % of a core (N * 90 / cpu%), which contention does not distort as much.
    """
    if (os.cpu_count() or 1) < 2:
        print("max room: needs 2 CPUs (server on one, generator on the other)")
        return
    steps = {
        "chorus": [int(x) for x in args.chorus_steps.split(",")],
        "janus": [int(x) for x in args.janus_steps.split(",")],
    }
    best: dict[str, tuple[int, Result | None]] = {}
    projected: dict[str, list[float]] = {}
    for which in ("chorus", "janus"):
        if which == "janus" and why_not:
            continue
        best[which] = (0, None)
        projected[which] = []
        misses = 0
        for n in steps[which]:
            server = ChorusServer(args, 3) if which == "chorus" else JanusServer(args)
            r = await run_one(server, f"max-{which}", n, 3, "3", args, cpu=1)
            results.append(r)
            ok = realtime(r)
            capacity = n * 90 / r.cpu_pct if r.cpu_pct > 0 else 0.0
            if not r.error:
                projected[which].append(capacity)
            print(
                f"  {which:<6} N={n:<5} cpu {r.cpu_pct:6.1f}% of its core  delivered "
                f"{r.delivered_pct:6.2f}%  mix pps min {r.mix_pps_min:5.1f}  machine busy "
                f"{r.busy_pct:5.1f}%  gen late {r.gen_late}  -> {capacity:5.0f} per core by CPU  "
                f"{'real time' if ok else 'NOT real time'} {r.error}",
                flush=True,
            )
            if ok:
                best[which] = (max(best[which][0], n), r)
                misses = 0
            else:
                misses += 1
                if misses >= 2 or r.cpu_pct >= 90:
                    break
            await asyncio.sleep(1.0)
    print("Largest room in real time, server pinned to one core (3 talkers):")
    for which, (n, r) in best.items():
        extra = f" ({r.cpu_pct}% of the core)" if r else ""
        by_cpu = max(projected[which], default=0)
        print(f"  {which:<7} {n}{extra}; by CPU cost: about {by_cpu:.0f} per core")
    if "chorus" in best and "janus" in best:
        if best["janus"][0]:
            print(f"  ratio Chorus/Janus (real time): {best['chorus'][0] / best['janus'][0]:.1f}x")
        if projected["janus"] and projected["chorus"]:
            ratio = max(projected["chorus"]) / max(projected["janus"])
            print(f"  ratio Chorus/Janus (by CPU cost): {ratio:.1f}x")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workloads", default="W1,W1all,W2,W3", help="comma-separated; '' none")
    parser.add_argument("--ns", default="10,30,50,100", help="N sweep with 3 talkers; '' none")
    parser.add_argument("--duration", type=float, default=15.0, help="measured window, s")
    parser.add_argument("--warmup", type=float, default=4.0, help="media before the window, s")
    parser.add_argument("--repeats", type=int, default=1, help="alternating server order")
    parser.add_argument("--complexity", type=int, default=4, help="Opus complexity, both (4)")
    parser.add_argument(
        "--chorus-defaults",
        action="store_true",
        help="run Chorus with its own mix settings (complexity 10, DTX) instead of Janus'",
    )
    parser.add_argument("--silence", choices=("encoded", "dtx"), default="encoded")
    parser.add_argument("--anchor", default=str(DEFAULT_ANCHOR), help="the Janus anchor folder")
    parser.add_argument("--no-janus", action="store_true", help="measure Chorus alone")
    parser.add_argument("--max-room", action="store_true", help="search the largest room")
    parser.add_argument("--chorus-steps", default="100,200,400,600,800,1000,1200")
    parser.add_argument("--janus-steps", default="25,50,75,100,125,150")
    parser.add_argument("--out", default=None, help="append JSON lines of every run here")
    args = parser.parse_args()
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())
