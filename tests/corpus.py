"""Where the shared test corpora live (RFC 4475 SIP torture messages, real SDPs): the
`shared/` folder beside the repository (as CI lays it out), or /work/shared on a developer
machine. Missing corpora fail the tests that need them; they are never skipped."""

from __future__ import annotations

from pathlib import Path

_CANDIDATES = (Path(__file__).resolve().parents[1].parent / "shared", Path("/work/shared"))


def shared_data(name: str) -> Path:
    for root in _CANDIDATES:
        if (root / "data" / name).is_dir():
            return root / "data" / name
    raise FileNotFoundError(f"shared/data/{name} not found beside the repository")
