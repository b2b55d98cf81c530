"""Which nodes of a deployment are alive, so the others can clean up after one that died.

Each node keeps `node:{<id>}` in the bus with a short TTL and refreshes it every `ttl_s / 3`;
a node that dies (killed, frozen, cut off from Redis) stops refreshing and its key expires
within `ttl_s`. After each refresh the node runs its sweepers: they end the calls (and free
the rooms) whose owning node's key is gone. A graceful shutdown deletes the key after the
node ended its own calls, so nothing is left to sweep.

A node that finds its own key gone at a beat (it is refreshed three times per TTL) knows the
bus lost its data: Redis restarted without persistence, or failed over to a replica that had
not caught up. Its resyncers then write back what it carries (calls, rooms), so requests about
them work again without any restart."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
from collections.abc import Awaitable, Callable

from voice.bus import Bus
from voice.errors import ChorusError

log = logging.getLogger("chorus.nodes")

NODE_TTL_S = 6.0
Sweeper = Callable[[Callable[[str], Awaitable[bool]]], Awaitable[int]]
Resyncer = Callable[[], Awaitable[int]]  # writes back this node's live state; how many items


def new_node_id() -> str:
    """Unique per process start: a restarted node is a new node (its old calls are gone)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


def _key(node_id: str) -> str:
    return f"node:{{{node_id}}}"


class NodeBeat:
    def __init__(
        self,
        bus: Bus,
        node_id: str,
        *,
        ttl_s: float = NODE_TTL_S,
        info: dict[str, str] | None = None,
    ) -> None:
        self.bus = bus
        self.node_id = node_id
        self.info = info or {}  # what other nodes may need to know (e.g. our SIP address)
        self.ttl_s = ttl_s
        self.sweepers: list[Sweeper] = []
        self.resyncers: list[Resyncer] = []
        self.resyncs = 0  # times the bus was found to have lost this node's state
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self._beat()
        self._task = asyncio.create_task(self._run(), name="chorus-node-beat")

    async def alive(self, node_id: str) -> bool:
        return node_id == self.node_id or await self.bus.get(_key(node_id)) is not None

    async def info_of(self, node_id: str) -> dict[str, str] | None:
        """What a live node says of itself (its `info`); None when it is gone."""
        beat = await self.bus.get(_key(node_id))
        return dict(beat.get("info") or {}) if beat is not None else None

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        with contextlib.suppress(ChorusError):
            await self.bus.delete(_key(self.node_id))

    async def _beat(self) -> None:
        beat = {"node": self.node_id, "info": self.info}
        await self.bus.put(_key(self.node_id), beat, ttl_s=self.ttl_s)

    async def _resync(self) -> None:
        self.resyncs += 1
        restored = 0
        for resync in self.resyncers:
            restored += await resync()
        log.warning("the bus had lost this node's live state: %d item(s) written back", restored)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.ttl_s / 3)
            try:
                lost = await self.bus.get(_key(self.node_id)) is None
                await self._beat()
                if lost:
                    await self._resync()
                for sweep in self.sweepers:
                    swept = await sweep(self.alive)
                    if swept:
                        log.warning("cleaned up %d item(s) left by nodes that are gone", swept)
            except ChorusError as exc:  # the bus is down: the next beat tries again
                log.warning("node heartbeat failed: %s", exc.message)
            except Exception:
                log.exception("a sweeper failed")
