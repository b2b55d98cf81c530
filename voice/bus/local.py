"""The in-process bus: the embedded default, one node, no Redis."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

from voice.bus.base import Message

_CLOSED = object()


class LocalSubscription:
    def __init__(self, bus: LocalBus, channels: tuple[str, ...]):
        self._bus = bus
        self.channels = channels
        self.queue: asyncio.Queue[object] = asyncio.Queue()

    async def __aiter__(self) -> AsyncIterator[Message]:
        while True:
            item = await self.queue.get()
            if item is _CLOSED:
                return
            yield item  # type: ignore[misc]

    async def close(self) -> None:
        self._bus._unsubscribe(self)
        self.queue.put_nowait(_CLOSED)


class LocalBus:
    def __init__(self) -> None:
        self._subscribers: dict[str, set[LocalSubscription]] = {}
        self._values: dict[str, tuple[Message, float | None]] = {}
        # member -> expiry (monotonic seconds), None for "until removed"
        self._sets: dict[str, dict[str, float | None]] = {}

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        for subs in list(self._subscribers.values()):
            for sub in list(subs):
                await sub.close()

    async def publish(self, channel: str, message: Message) -> None:
        for sub in list(self._subscribers.get(channel, ())):
            sub.queue.put_nowait(message)

    async def subscribe(self, *channels: str) -> LocalSubscription:
        sub = LocalSubscription(self, channels)
        for channel in channels:
            self._subscribers.setdefault(channel, set()).add(sub)
        return sub

    def _unsubscribe(self, sub: LocalSubscription) -> None:
        for channel in sub.channels:
            subs = self._subscribers.get(channel)
            if subs is not None:
                subs.discard(sub)
                if not subs:
                    del self._subscribers[channel]

    async def get(self, key: str) -> Message | None:
        entry = self._values.get(key)
        if entry is None:
            return None
        value, expires = entry
        if expires is not None and expires <= time.monotonic():
            del self._values[key]
            return None
        return value

    async def put(self, key: str, value: Message, *, ttl_s: float | None = None) -> None:
        expires = time.monotonic() + ttl_s if ttl_s is not None else None
        self._values[key] = (value, expires)

    async def put_if_absent(self, key: str, value: Message, *, ttl_s: float | None = None) -> bool:
        if await self.get(key) is not None:
            return False
        await self.put(key, value, ttl_s=ttl_s)
        return True

    async def delete(self, key: str) -> None:
        self._values.pop(key, None)

    async def add_member(self, key: str, member: str, *, ttl_s: float | None = None) -> None:
        expires = time.monotonic() + ttl_s if ttl_s is not None else None
        self._sets.setdefault(key, {})[member] = expires

    async def remove_member(self, key: str, member: str) -> None:
        members = self._sets.get(key)
        if members is not None:
            members.pop(member, None)
            if not members:
                del self._sets[key]

    async def members(self, key: str) -> set[str]:
        members = self._sets.get(key)
        if members is None:
            return set()
        now = time.monotonic()
        for member, expires in list(members.items()):
            if expires is not None and expires <= now:
                del members[member]
        if not members:
            del self._sets[key]
        return set(members)
