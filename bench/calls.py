"""The call benchmark of issue 2, in one run:

1. CPU per relayed one-to-one call against the same call bridged through aiortc's stock
   decode + re-encode path, and the most concurrent relayed calls one process carries
   (bench/calls_media.py; its options pass through);
2. setup time from `POST /v1/calls` to the first ringback packet at the caller, p50/p95
   over 50 calls through a real `chorus serve` (bench/call_setup.py).

    .venv/bin/python bench/calls.py [--setup-calls 50] [calls_media options...]
"""

from __future__ import annotations

import argparse
import sys

import call_setup
import calls_media


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], add_help=False)
    parser.add_argument("--setup-calls", type=int, default=50, help="calls timed for setup")
    parser.add_argument("-h", "--help", action="store_true")
    args, rest = parser.parse_known_args()
    if args.help:
        print(__doc__)
        sys.argv = [sys.argv[0], "--help"]
        calls_media.main()
        return
    sys.argv = [sys.argv[0], *rest]
    calls_media.main()
    print(f"\nsetup time over {args.setup_calls} calls...", flush=True)
    result = call_setup.run(args.setup_calls)
    print(f"{'setup: POST /v1/calls -> first ringback packet':<48} {'p50':>8} {'p95':>8}")
    p50, p95 = result["p50_ms"], result["p95_ms"]
    print(f"{'loopback, one chorus process':<48} {p50:>6.1f}ms {p95:>6.1f}ms")
    print("goal: p50 < 150 ms")


if __name__ == "__main__":
    main()
