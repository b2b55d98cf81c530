#!/usr/bin/env python3
"""Rooms per media worker: many small rooms on one `chorus serve`, with 0, 1 and 2 media
worker processes, on identical plain-RTP load.

Each room has --size participants (3 talking a tone, the rest sending encoded silence), from
the generator of bench/mixer.py running in this process (20 ms pacing, one socket per
participant). For each worker count the number of rooms grows by --step until a run no longer
delivers 99 % of the mixes in real time. Reported per run: the server's CPU (the API process
and its workers, from /proc), CPU per room, mixes delivered, and the generator's own CPU (it
shares the machine's 2 cores, so it bounds what can be shown here).

The anchor is the physical limit: N workers can use at most N cores, and the machine has
os.cpu_count() of them for the server and the generator together.

  .venv/bin/python bench/workers.py                       # workers 0,1,2; rooms 10,20,...
  .venv/bin/python bench/workers.py --workers 1 --rooms 10,40 --window 8
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import time

import httpx
from mixer import (
    LOOPBACK,
    PT,
    GenStats,
    Participant,
    machine,
    media_loop,
    pre_encode,
    self_cpu_s,
    tone_freq,
)
from service_load import ADMIN_KEY, Server, tree_cpu_s

TALKERS = 3


async def run(workers: int, rooms: int, size: int, window: float) -> dict[str, float]:
    server = Server(
        media_workers=str(workers),
        sample_hotlines="false",
        sip_port="0",
        mix_complexity="4",  # as bench/mixer.py measures against Janus
        mix_dtx="false",
    )
    amp = min(8000.0, 0.3 * 32767 / math.sqrt(TALKERS))
    silence = pre_encode(0.0, 0.0)
    tones = [pre_encode(tone_freq(i), amp) for i in range(TALKERS)]
    parts = [
        Participant(r * size + i, tones[i] if i < TALKERS else silence, i < TALKERS)
        for r in range(rooms)
        for i in range(size)
    ]
    try:
        headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
        async with httpx.AsyncClient(base_url=server.url, headers=headers, timeout=60) as http:
            sem = asyncio.Semaphore(8)

            async def join(room_id: str, p: Participant) -> None:
                async with sem:
                    body = {"host": LOOPBACK, "port": p.port, "codec": "opus", "payload_type": PT}
                    response = await http.post(f"/v1/rooms/{room_id}/rtp", json=body)
                    response.raise_for_status()
                    joined = response.json()
                    p.sock.connect((joined["server_host"], joined["server_port"]))

            for r in range(rooms):
                made = await http.post("/v1/rooms", json={"max_speakers": TALKERS})
                made.raise_for_status()
                room_id = made.json()["room_id"]
                await asyncio.gather(*(join(room_id, p) for p in parts[r * size : (r + 1) * size]))
        stats, stop = GenStats(), asyncio.Event()
        media = asyncio.create_task(media_loop(parts, stop, stats))
        await asyncio.sleep(2.0)  # warm-up: jitter buffers fill, speakers are found
        w0, c0, g0, m0 = time.monotonic(), tree_cpu_s(server.process.pid), self_cpu_s(), machine()
        rx0 = sum(p.rx for p in parts)
        await asyncio.sleep(window)
        w1, c1, g1, m1 = time.monotonic(), tree_cpu_s(server.process.pid), self_cpu_s(), machine()
        rx1 = sum(p.rx for p in parts)
        stop.set()
        await media
    finally:
        log = "".join(server.log_tail)
        server.close()
        for p in parts:
            p.sock.close()
    wall = w1 - w0
    cpu_pct = 100 * (c1 - c0) / wall
    total, idle = m1[0] - m0[0], m1[1] - m0[1]
    return {
        "workers": workers,
        "rooms": rooms,
        "participants": rooms * size,
        "cpu_pct": cpu_pct,
        "cpu_per_room": cpu_pct / rooms,
        "delivered_pct": 100 * (rx1 - rx0) / (len(parts) * wall * 50),
        "generator_pct": 100 * (g1 - g0) / wall,
        "machine_busy_pct": 100 * (1 - idle / max(1, total)),
        "log": log,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", default="0,1,2", help="media worker counts to run")
    parser.add_argument("--rooms", default="10,20,30,40,60", help="room counts, ascending")
    parser.add_argument("--size", type=int, default=5, help="participants per room")
    parser.add_argument("--window", type=float, default=8.0, help="seconds measured per run")
    args = parser.parse_args()
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}", flush=True)
    rows = []
    for workers in (int(w) for w in args.workers.split(",")):
        for rooms in (int(r) for r in args.rooms.split(",")):
            print(f"  {workers} worker(s), {rooms} rooms of {args.size}...", flush=True)
            row = asyncio.run(run(workers, rooms, args.size, args.window))
            rows.append(row)
            if row["delivered_pct"] < 99.0:
                break  # past real time for this worker count
    print()
    print(
        "workers  rooms  participants  server CPU %  CPU %/room  delivered %  generator %  busy %"
    )
    for r in rows:
        print(
            f"{r['workers']:>7}  {r['rooms']:>5}  {r['participants']:>12}  {r['cpu_pct']:>12.1f}"
            f"  {r['cpu_per_room']:>10.2f}  {r['delivered_pct']:>11.1f}"
            f"  {r['generator_pct']:>11.1f}"
            f"  {r['machine_busy_pct']:>6.1f}"
        )
    for workers in sorted({r["workers"] for r in rows}):
        real = [r for r in rows if r["workers"] == workers and r["delivered_pct"] >= 99.0]
        best = max((r["rooms"] for r in real), default=0)
        print(f"{workers} worker(s): {best} rooms of {args.size} in real time (>= 99 % delivered)")
    print(f"physical limit: {os.cpu_count()} cores shared by the server and the generator")


if __name__ == "__main__":
    main()
