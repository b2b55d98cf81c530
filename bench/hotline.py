"""Hotline callers under load: server CPU per caller beyond the leg's own cost, with in-band
DTMF detection off and on, the detector's own cost, and the first-prompt latency.

Each scenario runs its own `chorus serve`: N callers dial the sample hotline 114 and stay in
its menu (prompts are pre-encoded speech clips). The leg's own cost is measured in the same
run as N callers hearing a ringback tone (the same send path with no menu behind it).

    .venv/bin/python bench/hotline.py [--callers 20,50] [--window 10]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from service_load import Server, quiet, run_load, users

from voice.media.dtmf import DtmfDetector
from voice.media.opus import OpusDecoderStream, OpusEncoderStream


def detector_cost_pct(frames: int = 1000) -> tuple[float, float]:
    """(% of a core for the detector alone, for decode + detector) per stream at 50 fps."""
    rng = np.random.default_rng(3)
    speech = (rng.normal(0, 3000, 960 * frames)).astype(np.int16)
    encoder, decoder, detector = OpusEncoderStream(), OpusDecoderStream(), DtmfDetector()
    packets = [encoder.encode(speech[i * 960 : (i + 1) * 960]) for i in range(frames)]
    start = time.process_time()
    for i in range(frames):
        detector.feed(speech[i * 960 : (i + 1) * 960])
    detect = time.process_time() - start
    start = time.process_time()
    for packet in packets:
        detector.feed(decoder.decode(packet))
    both = time.process_time() - start
    return 100 * detect / frames * 50, 100 * both / frames * 50


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--callers", default="20,50", help="concurrent caller counts")
    parser.add_argument("--window", type=float, default=10.0, help="measuring window, seconds")
    args = parser.parse_args()
    detect_pct, decode_detect_pct = detector_cost_pct()
    rows = []
    for n in [int(x) for x in args.callers.split(",")]:
        for name, env in (
            ("leg only", {"hotline_inband_dtmf": "false"}),
            ("in-band off", {"hotline_inband_dtmf": "false"}),
            ("in-band on", {"hotline_inband_dtmf": "true"}),
        ):
            quiet()
            print(f"{n} callers, {name}...", flush=True)
            with Server(**env) as server:
                caller = users(server, "caller", 1)[0]
                if name == "leg only":
                    callee = users(server, "callee", 1)
                    rows.append(
                        (
                            name,
                            run_load(
                                server, [(caller, "callee0")] * n, callee, window_s=args.window
                            ),
                        )
                    )
                else:
                    time.sleep(3)  # the sample menus' prompts are spoken once at start
                    rows.append(
                        (
                            name,
                            run_load(
                                server, [(caller, "hotline:114")] * n, [], window_s=args.window
                            ),
                        )
                    )
    print()
    print(
        f"{'scenario':<12} {'callers':>7} {'server %core':>12} {'per caller':>10} "
        f"{'beyond leg':>10} {'delivered':>9} {'first prompt p50':>16} {'p95':>8}"
    )
    leg = {}
    for name, r in rows:
        if name == "leg only":
            leg[r.streams] = r.per_stream_pct
        extra = r.per_stream_pct - leg.get(r.streams, 0.0)
        print(
            f"{name:<12} {r.streams:>7} {r.server_cpu_pct:>11.1f}% {r.per_stream_pct:>9.2f}% "
            f"{extra:>9.2f}% {100 * r.delivered:>8.1f}% {r.setup_p50_ms:>14.1f}ms "
            f"{r.setup_p95_ms:>6.1f}ms"
        )
    print(
        f"\nDTMF detector alone: {detect_pct:.3f} % of a core per stream; "
        f"with the Opus decode it needs: {decode_detect_pct:.2f} %"
    )
    print("first prompt: from POST /v1/calls to the first audio packet of the greeting; a menu")
    print("is silent while it waits for keys, so packets delivered is no measure here")


if __name__ == "__main__":
    main()
