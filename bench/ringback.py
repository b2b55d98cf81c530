"""Ringback tones under load: server CPU per concurrent ringback stream, and the time from
`POST /v1/calls` to the first ringback packet.

Scenarios (one `chorus serve` process each): 1, 50 and 200 callers hearing the same tone,
and 50 callers hearing 50 different tones. The anchor is what a per-caller encoder would
add: libopus encoding of the tone for every listener (measured in this run, mono 32 kb/s),
which is what a platform without shared pre-encoded clips pays on top of the leg.

    .venv/bin/python bench/ringback.py [--streams 1,50,200] [--window 10]
"""

from __future__ import annotations

import argparse
import io
import time
import wave

import numpy as np
from service_load import Server, admin, quiet, run_load, users

from voice.media.opus import OpusEncoderStream


def wav(freq: float, seconds: float = 2.0) -> bytes:
    t = np.arange(round(seconds * 48000)) / 48000
    pcm = (np.sin(2 * np.pi * freq * t) * 12000).astype("<i2")
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(48000)
        w.writeframes(pcm.tobytes())
    return out.getvalue()


def stock_tones(server: Server, count: int) -> list[str]:
    ids = []
    with admin(server) as http:
        for i in range(count):
            response = http.post(
                "/v1/ringback/tones",
                files={"file": (f"t{i}.wav", wav(400 + 10 * i), "audio/wav")},
                data={"title": f"Tone {i}", "category": "bench"},
            )
            response.raise_for_status()
            ids.append(response.json()["tone_id"])
    return ids


def give_tones(server: Server, tokens: list[str], tone_ids: list[str]) -> None:
    """Callee i buys tone i and makes it its default."""
    import httpx

    with httpx.Client(base_url=server.url, timeout=60) as http:
        for token, tone in zip(tokens, tone_ids, strict=True):
            headers = {"Authorization": f"Bearer {token}"}
            http.post(
                "/v1/me/ringback/box", json={"tone_id": tone}, headers=headers
            ).raise_for_status()
            http.put(
                "/v1/me/ringback", json={"default_tone_id": tone}, headers=headers
            ).raise_for_status()


def encode_cost_pct(frames: int = 500) -> float:
    """% of a core one listener's own Opus encode of the tone would cost (50 frames/s)."""
    encoder = OpusEncoderStream(bitrate=32000)
    t = np.arange(960) / 48000
    pcm = (np.sin(2 * np.pi * 450 * t) * 8000).astype(np.int16)
    start = time.process_time()
    for _ in range(frames):
        encoder.encode(pcm)
    return 100 * (time.process_time() - start) / frames * 50


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", default="1,50,200", help="same-tone caller counts")
    parser.add_argument("--different", type=int, default=50, help="callers with different tones")
    parser.add_argument("--window", type=float, default=10.0, help="measuring window, seconds")
    args = parser.parse_args()
    counts = [int(x) for x in args.streams.split(",")]
    encode_pct = encode_cost_pct()
    rows = []
    with Server() as server:
        print("stocking the catalog...", flush=True)
        tones = stock_tones(server, max(args.different, 1))
        callees = users(server, "callee", max(args.different, 1))
        give_tones(server, callees, tones)
        caller = users(server, "caller", 1)[0]
        for n in counts:
            quiet()
            print(f"{n} callers, same tone...", flush=True)
            plan = [(caller, "callee0")] * n
            rows.append(("same tone", run_load(server, plan, [callees[0]], window_s=args.window)))
        if args.different:
            quiet()
            n = args.different
            print(f"{n} callers, {n} different tones...", flush=True)
            plan = [(caller, f"callee{i}") for i in range(n)]
            rows.append((f"{n} tones", run_load(server, plan, callees, window_s=args.window)))

    print()
    print(
        f"{'scenario':<12} {'streams':>7} {'server %core':>12} {'per stream':>10} "
        f"{'delivered':>9} {'setup p50':>9} {'p95':>8} {'vs encode-per-caller':>21}"
    )
    for name, r in rows:
        anchor = r.per_stream_pct + encode_pct
        print(
            f"{name:<12} {r.streams:>7} {r.server_cpu_pct:>11.1f}% {r.per_stream_pct:>9.2f}% "
            f"{100 * r.delivered:>8.1f}% {r.setup_p50_ms:>7.1f}ms {r.setup_p95_ms:>6.1f}ms "
            f"{r.per_stream_pct / anchor:>20.2f}x"
        )
    print(
        f"\nanchor: libopus encode of the tone per listener costs {encode_pct:.2f} % of a core "
        "(measured now); Chorus encodes each tone once and shares the packets, so the extra "
        "per stream beyond the leg's own send path is the packet hand-off only."
    )


if __name__ == "__main__":
    main()
