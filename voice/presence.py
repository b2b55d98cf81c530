"""Which devices of a user are connected, kept in the bus so every node sees the same.

Each device is a member with a TTL, refreshed by the node that holds its events socket (a
heartbeat every `ttl_s / 3`). A node that dies stops refreshing, so its devices drop out of
presence within `ttl_s` instead of staying "connected" forever; after a Redis restart the
heartbeat writes this node's devices back within one refresh."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from voice.bus import Bus
from voice.errors import ChorusError

log = logging.getLogger("chorus.presence")

PRESENCE_TTL_S = 15.0


class Presence:
    def __init__(self, bus: Bus, *, ttl_s: float = PRESENCE_TTL_S):
        self._bus = bus
        self.ttl_s = ttl_s
        # The devices whose sockets this process holds, with how many sockets each (a device
        # may reconnect before its old socket is noticed gone).
        self._local: dict[tuple[str, str], int] = {}
        self._heartbeat: asyncio.Task[None] | None = None

    async def connect(self, user_id: str, device_id: str) -> None:
        entry = (user_id, device_id)
        self._local[entry] = self._local.get(entry, 0) + 1
        await self._bus.add_member(_key(user_id), device_id, ttl_s=self.ttl_s)
        if self._heartbeat is None or self._heartbeat.done():
            self._heartbeat = asyncio.create_task(self._beat(), name="chorus-presence")

    async def disconnect(self, user_id: str, device_id: str) -> None:
        entry = (user_id, device_id)
        left = self._local.get(entry, 0) - 1
        if left > 0:
            self._local[entry] = left
            return
        self._local.pop(entry, None)
        await self._bus.remove_member(_key(user_id), device_id)

    async def devices(self, user_id: str) -> frozenset[str]:
        return frozenset(await self._bus.members(_key(user_id)))

    async def close(self) -> None:
        """Stops the heartbeat; the devices still listed expire with their TTL."""
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heartbeat
            self._heartbeat = None

    async def _beat(self) -> None:
        while self._local:
            await asyncio.sleep(self.ttl_s / 3)
            for user_id, device_id in list(self._local):
                if (user_id, device_id) not in self._local:
                    continue
                try:
                    await self._bus.add_member(_key(user_id), device_id, ttl_s=self.ttl_s)
                except ChorusError as exc:  # the bus is down: try again on the next beat
                    log.warning("presence refresh failed: %s", exc.message)
                    break


def device_channel(user_id: str, device: str) -> str:
    """The events channel of one device of one user. The user is part of it: device ids are
    chosen by clients, and two users' "phone" must never hear each other's calls."""
    return f"device:{user_id}:{device}"


def _key(user_id: str) -> str:
    return f"presence:{{{user_id}}}"
