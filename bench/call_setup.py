"""Call setup time: from `POST /v1/calls` to the first ringback RTP packet at the caller.

A real `chorus serve` process; the caller is an aiortc client in this process whose receiver
notes when the first RTP packet arrives (before its jitter buffer). Loopback only."""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time

import aioice.ice
import httpx
import websockets
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import AudioStreamTrack
from service_load import Server


async def session(http: httpx.AsyncClient, name: str) -> str:
    body = {"username": name, "password": f"{name}-secret"}
    await http.post("/v1/users", json=body)
    return (await http.post("/v1/sessions", json=body)).json()["token"]


async def one_call(http: httpx.AsyncClient, token: str) -> float:
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.addTrack(AudioStreamTrack())  # silence: the caller's microphone does not matter here
    first = asyncio.get_running_loop().create_future()
    await pc.setLocalDescription(await pc.createOffer())
    receiver = pc.getTransceivers()[0].receiver
    original = receiver._handle_rtp_packet

    async def spy(packet, arrival_time_ms):  # type: ignore[no-untyped-def]
        if not first.done():
            first.set_result(time.perf_counter())
        return await original(packet, arrival_time_ms)

    receiver._handle_rtp_packet = spy
    headers = {"Authorization": f"Bearer {token}"}
    started = time.perf_counter()
    created = await http.post(
        "/v1/calls", json={"to": "callee", "sdp": pc.localDescription.sdp}, headers=headers
    )
    created.raise_for_status()
    await pc.setRemoteDescription(RTCSessionDescription(created.json()["sdp"], "answer"))
    arrived = await asyncio.wait_for(first, 20)
    await http.post(f"/v1/calls/{created.json()['call_id']}/hangup", headers=headers)
    await pc.close()
    return arrived - started


async def measure(calls: int, base_url: str) -> list[float]:
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as http:
        caller = await session(http, "caller")
        callee = await session(http, "callee")
        ws_url = base_url.replace("http", "ws", 1) + f"/v1/events?token={callee}"
        async with websockets.connect(ws_url):  # the callee is online, so calls ring
            await one_call(http, caller)  # warm-up
            times = []
            for i in range(calls):
                times.append(await one_call(http, caller))
                print(f"\r  call {i + 1}/{calls}", end="", flush=True, file=sys.stderr)
            print(file=sys.stderr)
            return times


def run(calls: int, media_workers: int | None = None) -> dict[str, float]:
    aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: ["127.0.0.1"]
    env = {} if media_workers is None else {"media_workers": str(media_workers)}
    with Server(**env) as server:
        times = asyncio.run(measure(calls, server.url))
    ordered = sorted(times)
    return {
        "calls": calls,
        "p50_ms": statistics.median(ordered) * 1000,
        "p95_ms": ordered[min(len(ordered) - 1, round(0.95 * len(ordered)) - 1)] * 1000,
        "max_ms": ordered[-1] * 1000,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=50, help="calls to time (default 50)")
    parser.add_argument(
        "--media-workers", type=int, default=None, help="the server's (default: its own)"
    )
    args = parser.parse_args()
    result = run(args.calls, args.media_workers)
    print(
        f"{'setup: POST /v1/calls -> first ringback packet':<48} {'p50':>8} {'p95':>8} {'max':>8}"
    )
    print(
        f"{f'{args.calls} calls, loopback, media workers: {args.media_workers}':<48} "
        f"{result['p50_ms']:>6.1f}ms {result['p95_ms']:>6.1f}ms {result['max_ms']:>6.1f}ms"
    )
    print("goal: p50 < 150 ms (physical floor: ICE + DTLS handshakes on loopback)")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    main()
