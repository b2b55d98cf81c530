"""SIP load: concurrent SIP calls with media (sipp as UAC streaming PCMU) into Chorus.

Each call dials the sample hotline 114 (answered at once, spoken prompts: a realistic SIP leg
that also receives audio), so no WebRTC client is needed. For each concurrency level the
script starts a fresh server (SIP on, pjsua2 worker pool), runs sipp with `-l N -m N`, waits
until the calls are up, then measures for a window:

- calls up (legs with media) and calls whose uplink kept flowing (>= 45 packets/s reached the
  API process: PCMU from sipp -> pjsua2 -> Opus -> API),
- CPU of the API process, of all SIP workers together (per call), and of sipp,
- setup: time from the first INVITE to the N-th call up,
- and below the row, why sipp's failed calls failed (from its error file), if any did.

Usage: .venv/bin/python bench/sip.py [--levels 20,50,100] [--hold 40] [--window 10]
The idle cost of a worker is measured first (one started worker, no call).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.service import running
from tests.sip_peers import free_udp_port
from tests.sipp import write_pcmu_wav

HERE = Path(__file__).resolve().parent
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICKS


async def idle_worker_cost(window: float) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        async with running(Path(tmp), sip_port=free_udp_port(), sample_hotlines=False) as svc:
            pool = svc.runtime.sip.pool
            await asyncio.sleep(2)
            pids = [w.pid for w in pool.workers]
            before = sum(cpu_seconds(p) for p in pids)
            await asyncio.sleep(window)
            return 100 * (sum(cpu_seconds(p) for p in pids) - before) / window / max(1, len(pids))


async def _listen_to_all(sip) -> None:
    """Bridged mode: take every leg's audio as a bridge to WebRTC would (the worker then
    transcodes PCMU -> Opus for each call); the payloads are only counted here."""
    while True:
        for leg in list(sip.legs):
            if leg.on_audio is None:
                leg.on_audio = lambda payload, ts: None
        await asyncio.sleep(0.05)


async def level(
    n: int, hold: float, window: float, rate: int, workdir: Path, bridged: bool
) -> dict:
    sip_port = free_udp_port()
    async with running(
        workdir / f"data{n}",
        sip_port=sip_port,
        hotline_inband_dtmf=False,
        sip_workers=max(2, n // 4 + 2),
        sip_spare_calls=8,
        sip_rate_per_source=10000,
    ) as svc:
        sip = svc.runtime.sip
        scenario = workdir / "uac.xml"
        wav = workdir / "sine440.wav"
        write_pcmu_wav(wav, 440, 10)
        scenario.write_text(
            (HERE / "sip" / "uac_pcmu.xml").read_text().replace("__WAV__", str(wav))
        )
        started = time.monotonic()
        sipp = await asyncio.create_subprocess_exec(
            "sipp",
            "-sf",
            str(scenario),
            "-s",
            "114",
            f"127.0.0.1:{sip_port}",
            "-i",
            "127.0.0.1",
            "-p",
            str(free_udp_port()),
            "-mi",
            "127.0.0.1",
            "-mp",
            str(30000 + n * 10),
            "-l",
            str(n),
            "-m",
            str(n),
            "-r",
            str(rate),
            "-d",
            str(int(hold * 1000)),
            "-nostdin",
            "-timeout",
            str(int(hold + 60)),
            "-trace_err",
            "-error_file",
            str(workdir / f"sipp{n}.err"),
            "-trace_rtt",  # INVITE -> 200 of every call (the scenario's rtd), for p50/p95
            "-rtt_freq",
            "1",
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
            cwd=workdir,
        )
        listener = asyncio.create_task(_listen_to_all(sip)) if bridged else None
        setup_s = None
        deadline = started + hold * 0.6
        while time.monotonic() < deadline:
            up = sum(1 for leg in sip.legs if leg.media.is_set())
            if up >= n:
                setup_s = time.monotonic() - started
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(2)  # settle
        legs = list(sip.legs)
        workers = [w.pid for w in sip.pool.workers]
        packets0 = {id(leg): leg.packets_received for leg in legs}
        api0, workers0, sipp0 = (
            cpu_seconds(os.getpid()),
            sum(cpu_seconds(p) for p in workers),
            cpu_seconds(sipp.pid),
        )
        t0 = time.monotonic()
        await asyncio.sleep(window)
        elapsed = time.monotonic() - t0
        api = 100 * (cpu_seconds(os.getpid()) - api0) / elapsed
        work = 100 * (sum(cpu_seconds(p) for p in workers) - workers0) / elapsed
        sipp_cpu = 100 * (cpu_seconds(sipp.pid) - sipp0) / elapsed
        flowing = sum(
            1 for leg in legs if (leg.packets_received - packets0[id(leg)]) / elapsed >= 45
        )
        result = {
            "calls": n,
            "up": len([leg for leg in legs if leg.media.is_set()]),
            "flowing": flowing if bridged else -1,
            "workers": len(workers),
            "setup_s": setup_s,
            "api_cpu": api,
            "workers_cpu": work,
            "per_call": work / max(1, len(legs)),
            "sipp_cpu": sipp_cpu,
            "crashed": sip.pool.crashed,
        }
        if listener is not None:
            listener.cancel()
        try:
            await asyncio.wait_for(sipp.wait(), hold + 60)
        except TimeoutError:
            sipp.kill()
            await sipp.wait()
        result["sipp_errors"] = sipp_errors(workdir / f"sipp{n}.err")
        result["answer_ms"] = answer_times(workdir)
        return result


async def anchor_level(calls: int, hold: float, window: float, workdir: Path) -> dict:
    """The same sipp calls against one plain pjsua2 process (bench/sip_anchor.py): its CPU
    per call is what pjsua2 itself costs for this per-call work, without Chorus around it."""
    port = free_udp_port()
    anchor = await asyncio.create_subprocess_exec(
        sys.executable, str(HERE / "sip_anchor.py"), str(port),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    assert anchor.stdout is not None
    await asyncio.wait_for(anchor.stdout.readline(), 20)  # "ready"
    wav = workdir / "sine440.wav"
    write_pcmu_wav(wav, 440, 10)
    scenario = workdir / "uac_anchor.xml"
    scenario.write_text((HERE / "sip" / "uac_pcmu.xml").read_text().replace("__WAV__", str(wav)))
    errors = workdir / "sipp_anchor.err"
    sipp = await asyncio.create_subprocess_exec(
        "sipp", "-sf", str(scenario), "-s", "anchor", f"127.0.0.1:{port}",
        "-i", "127.0.0.1", "-p", str(free_udp_port()), "-mi", "127.0.0.1",
        "-mp", str(32000), "-l", str(calls), "-m", str(calls), "-r", "20",
        "-d", str(int(hold * 1000)), "-nostdin", "-timeout", str(int(hold + 60)),
        "-trace_err", "-error_file", str(errors),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL, cwd=workdir,
    )  # fmt: skip
    try:
        await asyncio.sleep(3)  # every call answered and streaming
        cpu0, t0 = cpu_seconds(anchor.pid), time.monotonic()
        await asyncio.sleep(window)
        elapsed = time.monotonic() - t0
        cpu = 100 * (cpu_seconds(anchor.pid) - cpu0) / elapsed
        await asyncio.wait_for(sipp.wait(), hold + 60)
    finally:
        for process in (sipp, anchor):
            if process.returncode is None:
                process.kill()
                await process.wait()
    return {"calls": calls, "cpu": cpu, "per_call": cpu / calls, "errors": sipp_errors(errors)}


def answer_times(workdir: Path) -> tuple[float, float] | None:
    """p50 and p95 of INVITE -> 200 OK per call, in ms, from sipp's -trace_rtt file(s)."""
    times = []
    for path in workdir.glob("*_rtt.csv"):
        for line in path.read_text(errors="replace").splitlines()[1:]:
            fields = line.split(";")
            if len(fields) >= 2:
                try:
                    times.append(float(fields[1]))
                except ValueError:
                    continue
        path.unlink()
    if not times:
        return None
    times.sort()
    return times[len(times) // 2], times[min(len(times) - 1, round(0.95 * len(times)) - 1)]


def sipp_errors(path: Path) -> dict[str, int]:
    """sipp's error file, counted by kind: e.g. "received 503 while expecting 180": 12."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return {}
    counts: dict[str, int] = {}
    # events follow each other, not always at a line start (a quoted message ends with ')
    for event in re.split(r"\d{4}-\d\d-\d\d\t[\d:.]+\t[\d.]+: ", text)[1:]:
        event = (event.splitlines() or [""])[0]
        received = re.search(r"expecting '([^']*)'.*received 'SIP/2.0 (\d+)", event)
        if received:
            kind = f"received {received[2]} while expecting {received[1]}"
        else:
            kind = re.sub(r"'[^']*'|\d+", "*", event)[:80]
        counts[kind] = counts.get(kind, 0) + 1
    return counts


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--levels", default="20,50,100")
    parser.add_argument("--hold", type=float, default=40.0, help="seconds each call lasts")
    parser.add_argument("--window", type=float, default=10.0, help="measurement window, s")
    parser.add_argument("--rate", type=int, default=20, help="new calls per second")
    parser.add_argument(
        "--mode",
        default="leg,bridged",
        help="leg: SIP legs only (the hotline plays prompts, nothing listens); bridged: the "
        "worker also encodes each caller's audio to Opus, as for a call to a WebRTC user",
    )
    args = parser.parse_args()
    if shutil.which("sipp") is None:
        raise SystemExit("sipp is not installed (Debian package sip-tester)")
    idle = await idle_worker_cost(args.window)
    print(f"idle worker: {idle:.3f} % of a core (one worker, no call, {args.window:.0f} s)")
    print(
        "mode     calls  up  flowing  workers  setup_s  api_%cpu  workers_%cpu  %cpu/call"
        "  sipp_%cpu  crashed"
    )
    with tempfile.TemporaryDirectory() as tmp:
        anchor = await anchor_level(4, min(args.hold, args.window + 8), args.window, Path(tmp))
        errors = anchor["errors"] or "none"
        print(
            f"anchor: one plain pjsua2 process, 4 calls (its limit): {anchor['cpu']:.1f} % of a"
            f" core, {anchor['per_call']:.2f} % per call; sipp errors: {errors}",
            flush=True,
        )
        for mode in args.mode.split(","):
            for n in (int(x) for x in args.levels.split(",")):
                r = await level(n, args.hold, args.window, args.rate, Path(tmp), mode == "bridged")
                _row(mode, r)


def _row(mode: str, r: dict) -> None:
    setup = f"{r['setup_s']:.1f}" if r["setup_s"] is not None else "-"
    flowing = str(r["flowing"]) if r["flowing"] >= 0 else "-"
    print(
        f"{mode:8s} {r['calls']:5d} {r['up']:3d} {flowing:>8} {r['workers']:8d} {setup:>8}"
        f" {r['api_cpu']:9.1f} {r['workers_cpu']:13.1f} {r['per_call']:10.2f}"
        f" {r['sipp_cpu']:10.1f} {r['crashed']:8d}",
        flush=True,
    )
    if r.get("answer_ms"):
        p50, p95 = r["answer_ms"]
        print(f"         INVITE -> 200 per call: p50 {p50:.0f} ms, p95 {p95:.0f} ms", flush=True)
    for kind, count in r["sipp_errors"].items():
        print(f"         sipp: {count} x {kind}", flush=True)


if __name__ == "__main__":
    asyncio.run(main())
