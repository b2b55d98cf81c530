"""The API process's side of the media workers: starts them, talks to them, replaces the
ones that die.

A `WorkerLink` is one worker: requests with replies (`new`, `call`), ordered one-way messages
(`tell`), and the worker's events routed to the handler of the object they concern. When a
worker dies every handler hears ("lost", ()) at once (its legs end `failed`, its rooms end)
and the pool starts a replacement. `MediaWorkers.pick` places new work on the least-loaded
worker, or next to related work (`near`: the other leg of a call, a room's own worker).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import os
import signal
import socket
import sys
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from voice.errors import Unavailable
from voice.media.opus import OpusClip
from voice.workers import wire
from voice.workers.host import CLIPS_KEPT
from voice.workers.wire import ClipRef

log = logging.getLogger("chorus.worker")

START_TIMEOUT_S = 60.0  # a fresh interpreter importing aiortc: ~1 s, far more on a busy box
RESTART_DELAY_S = (0.2, 5.0)  # backoff between replacements of a worker that keeps dying

EventHandler = Callable[[str, tuple[Any, ...]], None]


class WorkerLost(Unavailable):
    code = "media_worker_lost"


class WorkerLink:
    def __init__(self, index: int, entry: str, config: dict[str, Any]) -> None:
        self.index = index
        self.pid = 0
        self.alive = False
        self.started_at = 0.0
        self.on_lost: Callable[[WorkerLink], None] | None = None
        self.held = 0
        self._entry = entry
        self._config = config
        self._process: asyncio.subprocess.Process | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._reader_task: asyncio.Task[None] | None = None
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._handlers: dict[int, EventHandler] = {}
        self._clips: OrderedDict[int, OpusClip] = OrderedDict()
        self._rids = itertools.count(1)

    @property
    def load(self) -> int:
        """Objects (legs, rooms) living in this worker, and what its objects hold besides
        (`held`: plain-RTP legs a rooms host keeps)."""
        return len(self._handlers) + self.held

    async def start(self) -> None:
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self._process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", self._entry,
                "--fd", str(child.fileno()), "--config", json.dumps(self._config),
                pass_fds=[child.fileno()],
                env={**os.environ, "OPENBLAS_NUM_THREADS": "1"},
            )  # fmt: skip
        finally:
            child.close()
        reader, self._writer = await asyncio.open_unix_connection(sock=parent)
        try:
            kind, self.pid = await asyncio.wait_for(wire.read(reader), START_TIMEOUT_S)
        except (TimeoutError, asyncio.IncompleteReadError, ConnectionError) as exc:
            self._kill()
            raise Unavailable(f"media worker {self.index} did not start ({exc!r})") from exc
        self.alive = True
        self.started_at = time.monotonic()
        self._reader_task = asyncio.get_running_loop().create_task(self._read(reader))
        log.info("media worker %d started (pid %d)", self.index, self.pid)

    # -- requests ------------------------------------------------------------------------

    async def new(self, kind: str, handler: EventHandler, **kwargs: Any) -> tuple[int, Any]:
        """Make a `kind` object in the worker; its events go to `handler`."""
        obj_id, info = await self._request(("new", kind, kwargs))
        if not self.alive:  # lost while the reply was on its way
            raise WorkerLost(f"media worker {self.index} was lost")
        self._handlers[obj_id] = handler
        return obj_id, info

    async def call(self, obj_id: int, method: str, *args: Any, **kwargs: Any) -> Any:
        return await self._request(("call", obj_id, method, args, kwargs))

    def tell(self, obj_id: int, method: str, *args: Any, **kwargs: Any) -> None:
        self._send(("tell", obj_id, method, args, kwargs))

    def drop(self, obj_id: int) -> None:
        """Close and forget the object (no more events from it)."""
        if self._handlers.pop(obj_id, None) is not None:
            self._send(("drop", obj_id))

    def clip(self, clip: OpusClip) -> ClipRef:
        """`clip` as the worker knows it: sent once, then named. Clips are immutable and
        shared, and this mirror of the worker's cache holds them, so `id()` names one
        clip for as long as the worker may have it."""
        key = id(clip)
        if self._clips.get(key) is clip:
            self._clips.move_to_end(key)
        else:
            self._clips[key] = clip
            self._send(("clip", key, clip.packets))
            while len(self._clips) > CLIPS_KEPT:
                self._clips.popitem(last=False)
        return ClipRef(key)

    async def _request(self, body: tuple[Any, ...]) -> Any:
        if not self.alive:
            raise WorkerLost(f"media worker {self.index} is not running")
        rid = next(self._rids)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[rid] = future
        self._send((body[0], rid, *body[1:]))
        try:
            return await future
        finally:
            self._pending.pop(rid, None)

    def _send(self, message: tuple[Any, ...]) -> None:
        if self.alive and self._writer is not None and not self._writer.is_closing():
            self._writer.write(wire.pack(message))

    # -- what the worker says --------------------------------------------------------------

    async def _read(self, reader: asyncio.StreamReader) -> None:
        try:
            while True:
                message = await wire.read(reader)
                if message[0] == "event":
                    _, obj_id, name, args = message
                    handler = self._handlers.get(obj_id)
                    if handler is not None:
                        try:
                            handler(name, args)
                        except Exception:
                            log.exception("media worker %d: %s handler failed", self.index, name)
                    continue
                kind, rid, value = message
                future = self._pending.get(rid)
                if future is None or future.done():
                    continue
                if kind == "ok":
                    future.set_result(value)
                else:
                    future.set_exception(wire.rebuild_error(value))
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        except Exception:
            log.exception("media worker %d: unreadable message", self.index)
        self._lost()

    def _lost(self) -> None:
        if not self.alive:
            return
        self.alive = False
        self._kill()
        for future in self._pending.values():
            if not future.done():
                future.set_exception(WorkerLost(f"media worker {self.index} was lost"))
        handlers, self._handlers = self._handlers, {}
        for handler in handlers.values():
            with contextlib.suppress(Exception):
                handler("lost", ())
        if self.on_lost is not None:
            self.on_lost(self)

    def _kill(self) -> None:
        if self._writer is not None:
            self._writer.close()
        if self._process is not None and self._process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self._process.kill()

    def kill(self) -> None:
        """SIGKILL the worker (what a crash looks like; for tests and operators)."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)

    async def close(self) -> None:
        self.on_lost = None
        self._lost()
        if self._process is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._process.wait(), 5.0)
        if self._reader_task is not None:
            self._reader_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader_task


class MediaWorkers:
    """`count` worker processes running `entry` (a module: `python -m entry --fd --config`)."""

    def __init__(self, count: int, *, entry: str, config: dict[str, Any]) -> None:
        if count < 1:
            raise ValueError("at least one media worker")
        self._entry = entry
        self._config = config
        self.links: list[WorkerLink] = [self._link(i) for i in range(count)]
        self.restarts = 0
        self._closing = False
        self._tasks: set[asyncio.Task[Any]] = set()

    def _link(self, index: int) -> WorkerLink:
        link = WorkerLink(index, self._entry, self._config)
        link.on_lost = self._lost
        return link

    async def start(self) -> None:
        await asyncio.gather(*(link.start() for link in self.links))

    def pick(self, near: WorkerLink | None = None) -> WorkerLink:
        """Where new work goes: `near`'s worker when it is alive, else the least loaded."""
        if near is not None and near.alive:
            return near
        alive = [link for link in self.links if link.alive]
        if not alive:
            raise Unavailable("no media worker is running", code="no_media_worker")
        return min(alive, key=lambda link: link.load)

    def _lost(self, link: WorkerLink) -> None:
        if self._closing:
            return
        uptime = time.monotonic() - link.started_at
        log.warning("media worker %d (pid %d) was lost after %.1f s", link.index, link.pid, uptime)
        # A worker that dies soon after starting, again and again, must not spin.
        self._replace_soon(link.index, RESTART_DELAY_S[0] if uptime > 30 else RESTART_DELAY_S[1])

    def _replace_soon(self, index: int, delay: float) -> None:
        task = asyncio.get_running_loop().create_task(self._replace(index, delay))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _replace(self, index: int, delay: float) -> None:
        await asyncio.sleep(delay)
        if self._closing:
            return
        link = self._link(index)
        self.links[index] = link
        try:
            await link.start()
            self.restarts += 1
        except Exception as exc:
            log.error("media worker %d could not be restarted: %s", index, exc)
            self._replace_soon(index, RESTART_DELAY_S[1])

    async def close(self) -> None:
        self._closing = True
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await asyncio.gather(*(link.close() for link in self.links), return_exceptions=True)
