from __future__ import annotations

from typing import Any, Protocol


class ProviderError(Exception):
    """The provider could not answer (timeout, bad data); the caller hears an apology."""


class Provider(Protocol):
    async def lookup(self, key: str) -> dict[str, Any] | None: ...
