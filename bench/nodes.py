"""Several nodes: call setups per second with 1, 2 and 3 `chorus serve` nodes sharing one Redis
and one PostgreSQL (started here on free ports), and what Redis costs per call setup.

A setup is what a person does: the caller places a call (the caller's WebRTC leg is created,
ringback starts, the callee's devices ring), the callee answers (the callee's leg is created and
bridged) and hangs up. Requests go round-robin to the nodes, as a load balancer would send them,
so about half of the answers and hang-ups land on a node that does not carry the call and are
forwarded to it. The offers are real aiortc offers made once (ICE never completes: the setup,
not the media, is measured). Load comes from a separate process on the same 2 cores, so the
scaling figure is what this machine gives, not what separate machines would.

Each run is NODESxWORKERS: nodes, and media worker processes per node (0: media in the node's
own process). Server CPU includes the workers.

Usage: .venv/bin/python bench/nodes.py [--runs 1x0,1x2,2x1,3x1] [--window 15] [--concurrency 12]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import sys
import time
from pathlib import Path

import httpx
import websockets

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from service_load import Server, sign_up

from tests.backends import PostgresServer, RedisServer


def offer_sdp() -> str:
    from aiortc import RTCConfiguration, RTCPeerConnection
    from aiortc.mediastreams import AudioStreamTrack

    async def make() -> str:
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        pc.addTrack(AudioStreamTrack())
        await pc.setLocalDescription(await pc.createOffer())
        sdp = pc.localDescription.sdp
        await pc.close()
        return sdp

    return asyncio.run(make())


async def _load(
    urls: list[str], pairs: list[tuple[str, str, str]], sdp: str, window: float, out: object
) -> None:
    """`pairs`: (caller token, callee name, callee token). Each worker loops on one pair."""
    clients = [httpx.AsyncClient(base_url=u, timeout=60) for u in urls]
    sockets = []
    for index, (_, _, callee_token) in enumerate(pairs):  # callees online: calls ring
        base = urls[index % len(urls)].replace("http", "ws", 1)
        sockets.append(await websockets.connect(f"{base}/v1/events?token={callee_token}"))
    done: list[float] = []
    errors = 0
    turn = 0
    stop_at = time.monotonic() + window

    def client() -> httpx.AsyncClient:
        nonlocal turn
        turn += 1
        return clients[turn % len(clients)]

    async def worker(caller: str, callee: str, callee_token: str) -> None:
        nonlocal errors
        as_caller = {"Authorization": f"Bearer {caller}"}
        as_callee = {"Authorization": f"Bearer {callee_token}"}
        while time.monotonic() < stop_at:
            started = time.perf_counter()
            try:
                placed = await client().post(
                    "/v1/calls", json={"to": callee, "sdp": sdp}, headers=as_caller
                )
                placed.raise_for_status()
                call_id = placed.json()["call_id"]
                answered = await client().post(
                    f"/v1/calls/{call_id}/answer", json={"sdp": sdp}, headers=as_callee
                )
                answered.raise_for_status()
                await client().post(f"/v1/calls/{call_id}/hangup", headers=as_caller)
                done.append(time.perf_counter() - started)
            except httpx.HTTPError:
                errors += 1
                await asyncio.sleep(0.1)

    began, cpu0 = time.monotonic(), time.process_time()
    await asyncio.gather(*(worker(*pair) for pair in pairs))
    elapsed, cpu = time.monotonic() - began, time.process_time() - cpu0
    # Figures first: the parent measures CPU up to now. (Closing sockets whose events were
    # never read can take seconds: the close waits behind them.)
    out.send((len(done), errors, elapsed, sorted(done), cpu))  # type: ignore[attr-defined]
    for ws in sockets:
        await ws.close()
    for http in clients:
        await http.aclose()


def _load_main(*args: object) -> None:
    asyncio.run(_load(*args))  # type: ignore[arg-type]


def machine_busy_s() -> float:
    """CPU seconds all cores spent busy (not idle or waiting), from /proc/stat."""
    with open("/proc/stat") as stat:
        values = [int(x) for x in stat.readline().split()[1:9]]  # guest time is in user
    return (sum(values) - values[3] - values[4]) / os.sysconf("SC_CLK_TCK")


def redis_commands(port: int) -> int:
    import redis

    client = redis.Redis(port=port)
    try:
        return int(client.info("stats")["total_commands_processed"])
    finally:
        client.close()


def redis_rtt_ms(port: int) -> float:
    import redis

    client = redis.Redis(port=port)
    try:
        client.ping()
        started = time.perf_counter()
        for _ in range(200):
            client.ping()
        return (time.perf_counter() - started) / 200 * 1000
    finally:
        client.close()


def run(nodes: int, workers: int, window: float, concurrency: int, sdp: str) -> dict[str, float]:
    redis_server, postgres = RedisServer(), PostgresServer()
    redis_server.start()
    postgres.start()
    servers: list[Server] = []
    try:
        database = postgres.url(postgres.create_database())
        env = {"redis_url": redis_server.url, "database_url": database}
        env.update(sample_hotlines="false", sip_port="0")  # setups only: no SIP workers
        env.update(media_workers=str(workers))
        for _ in range(nodes):
            servers.append(Server(**env))
        urls = [s.url for s in servers]
        pairs = []
        with httpx.Client(base_url=urls[0], timeout=60) as http:
            for i in range(concurrency):
                pairs.append((sign_up(http, f"a{i}"), f"b{i}", sign_up(http, f"b{i}")))
        ctx = multiprocessing.get_context("spawn")
        parent, child = ctx.Pipe()
        commands0 = redis_commands(redis_server.port)
        cpu0, busy0, wall0 = [s.cpu_s() for s in servers], machine_busy_s(), time.monotonic()
        process = ctx.Process(target=_load_main, args=(urls, pairs, sdp, window, child))
        process.start()
        setups, errors, elapsed, times, load_cpu = parent.recv()
        cpu = sum(s.cpu_s() - c for s, c in zip(servers, cpu0, strict=True))
        busy, wall = machine_busy_s() - busy0, time.monotonic() - wall0
        process.join(60)
        commands = redis_commands(redis_server.port) - commands0
        rtt = redis_rtt_ms(redis_server.port)
    finally:
        for server in servers:
            server.close()
        postgres.close()
        redis_server.close()
    p95 = times[min(len(times) - 1, round(0.95 * len(times)) - 1)] if times else 0.0
    return {
        "nodes": nodes,
        "workers": workers,
        "setups_per_s": setups / elapsed,
        "errors": errors,
        "p50_ms": 1000 * times[len(times) // 2] if times else 0.0,
        "p95_ms": 1000 * p95,
        # Over the whole run (the load process's start and connections included).
        "server_cpu_pct": 100 * cpu / wall,
        "load_cpu_pct": 100 * load_cpu / elapsed,
        "busy_pct": 100 * busy / wall,
        "redis_commands_per_setup": commands / max(1, setups),
        "redis_ms_per_setup": commands / max(1, setups) * rtt,
        "redis_rtt_ms": rtt,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--runs", default="1x0,1x2,2x1,3x1", help="NODESxWORKERS per run (workers per node)"
    )
    parser.add_argument("--window", type=float, default=15.0, help="seconds of load per run")
    parser.add_argument("--concurrency", type=int, default=12, help="callers looping at once")
    args = parser.parse_args()
    print(f"nodes: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}", flush=True)
    sdp = offer_sdp()
    rows = []
    for spec in args.runs.split(","):
        count, workers = (int(x) for x in spec.split("x"))
        print(f"  {count} node(s) x {workers} media worker(s): {args.window:.0f} s...", flush=True)
        rows.append(run(count, workers, args.window, args.concurrency, sdp))
    print()
    print(
        "nodes  workers  setups/s  errors  p50 ms  p95 ms  servers CPU %  load CPU %  machine %"
        "  Redis cmds/setup  Redis ms/setup"
    )
    for r in rows:
        print(
            f"{r['nodes']:>5}  {r['workers']:>7}  {r['setups_per_s']:>8.1f}  {r['errors']:>6}"
            f"  {r['p50_ms']:>6.0f}"
            f"  {r['p95_ms']:>6.0f}  {r['server_cpu_pct']:>13.0f}  {r['load_cpu_pct']:>10.0f}"
            f"  {r['busy_pct']:>9.0f}  "
            f"{r['redis_commands_per_setup']:>16.1f}  {r['redis_ms_per_setup']:>14.1f}"
        )
    base = rows[0]["setups_per_s"] or 1
    first = f"{rows[0]['nodes']}x{rows[0]['workers']}"
    for r in rows[1:]:
        print(f"scaling {first} -> {r['nodes']}x{r['workers']}: {r['setups_per_s'] / base:.2f}x")
    print(f"Redis round trip here: {rows[-1]['redis_rtt_ms']:.3f} ms (PING, loopback)")
    print(f"load average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
