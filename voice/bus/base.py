"""The live-state and event bus interface.

Everything that is live (connected devices, calls in progress, later rooms and queues) goes
through this small interface, so one process (`LocalBus`) and many nodes (a Redis bus) behave
the same. Values are JSON-able dicts (a Redis bus hands back a decoded copy, never the same
object); keys are plain strings chosen by the domain modules, with `{...}` hash tags grouping
the keys Redis Cluster must keep in one slot. Failing to reach a shared backend raises
`voice.errors.Unavailable`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Protocol

Message = dict[str, Any]


class Subscription(Protocol):
    def __aiter__(self) -> AsyncIterator[Message]: ...

    async def close(self) -> None: ...


class Bus(Protocol):
    async def start(self) -> None: ...

    async def close(self) -> None: ...

    # events
    async def publish(self, channel: str, message: Message) -> None: ...

    async def subscribe(self, *channels: str) -> Subscription: ...

    # live state
    async def get(self, key: str) -> Message | None: ...

    async def put(self, key: str, value: Message, *, ttl_s: float | None = None) -> None: ...

    async def put_if_absent(
        self, key: str, value: Message, *, ttl_s: float | None = None
    ) -> bool: ...

    async def delete(self, key: str) -> None: ...

    async def add_member(self, key: str, member: str, *, ttl_s: float | None = None) -> None:
        """Adds `member` to the set at `key`. With `ttl_s` the member goes away by itself
        after that long unless it is added again (a heartbeat: what a dead node added
        disappears); without, it stays until removed."""

    async def remove_member(self, key: str, member: str) -> None: ...

    async def members(self, key: str) -> set[str]: ...
