"""Micro-benchmark of the pure mixer arithmetic: Chorus's top-K mix against a mix-minus for all.

No codec, no sockets: microseconds of CPU per 20 ms tick for one room of N participants, 3 of
them talking. Compared with what Janus AudioBridge does (minus its codec work): sum all N
decoded frames, then give every participant its own clipped mix-minus, N outputs per tick.

Chorus columns:
- "top-3, DTX": the other participants send DTX, so the engine passes no level for them;
- "top-3, levels": every participant sends a level (open microphones at -60 dBov): the
  speaker selection reads N levels a tick;
- "K=all": every one of the N participants talks and is mixed (mix-minus for each), as Janus.

The ratio is naive / "top-3, levels", the conservative of the two top-3 figures.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np

from conference.mixer import FRAME_SAMPLES, RoomMixer
from conference.speakers import SpeakerPolicy

RATE = 48000
TALKERS = 3


def tone_frames(n: int, ticks: int) -> np.ndarray:
    """(ticks, n, 960) int16: participant i says a sine at 200 + 50 i Hz, at -12..-20 dBFS."""
    t = np.arange(ticks * FRAME_SAMPLES) / RATE
    out = np.empty((ticks, n, FRAME_SAMPLES), dtype=np.int16)
    for i in range(n):
        level = 0.25 - 0.15 * (i % 7) / 7
        wave = np.sin(2 * np.pi * (200 + 50 * i) * t) * level * 32767
        out[:, i, :] = np.round(wave).astype(np.int16).reshape(ticks, FRAME_SAMPLES)
    return out


def per_tick_us(run: Callable[[int], None], ticks: int, repeat: int) -> float:
    """Best of `repeat` runs of `ticks` ticks, in microseconds per tick."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        for tick in range(ticks):
            run(tick)
        best = min(best, time.perf_counter() - start)
    return best / ticks * 1e6


def chorus(n: int, frames: np.ndarray, *, k: int | None, talkers: int, levels_for_all: bool):
    ids = [f"p{i:03d}" for i in range(n)]
    mixer = RoomMixer(SpeakerPolicy(max_speakers=k))
    for pid in ids:
        mixer.join(pid)
    loud = ids[:talkers]
    cycle = len(frames)
    quiet_levels = {pid: -60.0 for pid in ids[talkers:]} if levels_for_all else {}
    # Levels per tick as the engine would have them (RFC 6464 or a decoded frame).
    talk_levels = [
        {pid: -15.0 - i % 10 for i, pid in enumerate(loud)} | quiet_levels for _ in range(cycle)
    ]
    per_tick_frames = [dict(zip(ids, frames[t], strict=True)) for t in range(cycle)]

    def run(tick: int) -> None:
        slot = tick % cycle
        mixer.select(talk_levels[slot])
        everyone = per_tick_frames[slot]
        # The engine decodes only the speakers: hand the mixer just their frames.
        mixer.mix({pid: everyone[pid] for pid in mixer.speakers})

    for tick in range(10):  # let the speaker set settle
        run(tick)
    assert len(mixer.speakers) == (talkers if k is None else min(k, talkers))
    return run


def naive_loop(n: int, frames: np.ndarray):
    """Janus-style mix-minus for all: preallocated int32, in place, one output per participant."""
    total = np.zeros(FRAME_SAMPLES, dtype=np.int32)
    minus = np.zeros(FRAME_SAMPLES, dtype=np.int32)
    outputs = np.zeros((n, FRAME_SAMPLES), dtype=np.int16)
    cycle = len(frames)

    def run(tick: int) -> None:
        decoded = frames[tick % cycle]
        np.sum(decoded, axis=0, dtype=np.int32, out=total)
        for i in range(n):
            np.subtract(total, decoded[i], out=minus)
            np.clip(minus, -32768, 32767, out=minus)
            np.copyto(outputs[i], minus, casting="unsafe")

    return run


def naive_vectorised(n: int, frames: np.ndarray):
    """The same arithmetic as one numpy expression over an (N, 960) matrix."""
    total = np.zeros(FRAME_SAMPLES, dtype=np.int32)
    minus = np.zeros((n, FRAME_SAMPLES), dtype=np.int32)
    outputs = np.zeros((n, FRAME_SAMPLES), dtype=np.int16)
    cycle = len(frames)

    def run(tick: int) -> None:
        decoded = frames[tick % cycle]
        np.sum(decoded, axis=0, dtype=np.int32, out=total)
        np.subtract(total, decoded, out=minus)
        np.clip(minus, -32768, 32767, out=minus)
        np.copyto(outputs, minus, casting="unsafe")

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 50, 100, 200])
    parser.add_argument("--ticks", type=int, default=1000, help="ticks per timed run")
    parser.add_argument("--repeat", type=int, default=5, help="timed runs; the best counts")
    parser.add_argument("-k", type=int, default=3, help="speakers mixed (K)")
    args = parser.parse_args()

    print(f"µs of CPU per 20 ms tick (best of {args.repeat} x {args.ticks} ticks), no codec")
    header = (
        f"{'N':>5} | {'top-3, DTX':>10} | {'top-3, levels':>13} | {'K=all':>8} |"
        f" {'naive all-N':>11} | {'naive/top-3':>11} | {'naive/K=all':>11}"
    )
    print(header)
    print("-" * len(header))
    for n in args.sizes:
        frames = tone_frames(n, 50)
        dtx = per_tick_us(
            chorus(n, frames, k=args.k, talkers=TALKERS, levels_for_all=False),
            args.ticks,
            args.repeat,
        )
        levels = per_tick_us(
            chorus(n, frames, k=args.k, talkers=TALKERS, levels_for_all=True),
            args.ticks,
            args.repeat,
        )
        everyone = per_tick_us(
            chorus(n, frames, k=None, talkers=n, levels_for_all=False), args.ticks, args.repeat
        )
        naive = min(
            per_tick_us(naive_loop(n, frames), args.ticks, args.repeat),
            per_tick_us(naive_vectorised(n, frames), args.ticks, args.repeat),
        )
        print(
            f"{n:>5} | {dtx:>10.1f} | {levels:>13.1f} | {everyone:>8.1f} |"
            f" {naive:>11.1f} | {naive / levels:>10.1f}x | {naive / everyone:>10.2f}x"
        )
    print("naive all-N = the faster of a per-participant in-place loop and one vectorised")
    print("expression; K=all runs Chorus with every participant talking and mixed.")


if __name__ == "__main__":
    main()
