"""A media worker's main loop: it holds objects (legs, the rooms engine) by id and carries out
the API process's messages (see `wire`). Factories, given by the worker's entry point, make
the objects; an object reports back through `Host.emit`.

"tell"s run in arrival order, at once (play, relay, a packet for a room); "new" and "call"
may wait (ICE gathering, closing a connection), so each runs in its own task and replies when
done. The worker exits when the parent's socket closes, and dies with the parent anyway
(PR_SET_PDEATHSIG), so no worker outlives its server.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import inspect
import itertools
import logging
import os
import signal
import socket
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

from voice.errors import ChorusError
from voice.media.opus import OpusClip
from voice.workers import wire
from voice.workers.wire import ClipRef, Ref

log = logging.getLogger("chorus.worker")

CLIPS_KEPT = 64  # the parent resends a clip the worker has dropped (it mirrors this LRU)

# (host, object id, **kwargs) -> (object, info for the parent)
Factory = Callable[..., Awaitable[tuple[Any, Any]]]


class Host:
    def __init__(self, writer: asyncio.StreamWriter, factories: dict[str, Factory]) -> None:
        self._writer = writer
        self._factories = factories
        self.objects: dict[int, Any] = {}
        self.clips: OrderedDict[int, OpusClip] = OrderedDict()
        self._ids = itertools.count(1)
        self._tasks: set[asyncio.Task[Any]] = set()

    def emit(self, obj_id: int, name: str, *args: Any) -> None:
        """Tell the parent something happened to object `obj_id`."""
        if not self._writer.is_closing():
            self._writer.write(wire.pack(("event", obj_id, name, args)))

    async def handle(self, message: tuple[Any, ...]) -> None:
        op = message[0]
        if op == "tell":
            _, obj_id, method, args, kwargs = message
            try:
                self._invoke(obj_id, method, args, kwargs)
            except Exception:
                log.exception("worker: %s on object %s failed", method, obj_id)
        elif op == "new":
            _, rid, kind, kwargs = message
            self._run(rid, self._new(kind, kwargs))
        elif op == "call":
            _, rid, obj_id, method, args, kwargs = message
            self._run(rid, self._call(obj_id, method, args, kwargs))
        elif op == "clip":
            _, key, packets = message
            self.clips[key] = OpusClip(packets)
            while len(self.clips) > CLIPS_KEPT:
                self.clips.popitem(last=False)
        elif op == "drop":
            obj = self.objects.pop(message[1], None)
            if obj is not None:
                self._run(None, _close(obj))
        else:
            log.error("worker: unknown message %r", op)

    async def _new(self, kind: str, kwargs: dict[str, Any]) -> Any:
        obj_id = next(self._ids)
        obj, info = await self._factories[kind](self, obj_id, **kwargs)
        self.objects[obj_id] = obj
        return obj_id, info

    async def _call(self, obj_id: int, method: str, args: Any, kwargs: Any) -> Any:
        result = self._invoke(obj_id, method, args, kwargs)
        return await result if inspect.isawaitable(result) else result

    def _invoke(self, obj_id: int, method: str, args: Any, kwargs: Any) -> Any:
        # Arguments first: naming a clip refreshes it in the cache exactly as the parent's
        # mirror did when it sent this, even if the object has gone meanwhile.
        resolved = [self._resolve(a) for a in args]
        obj = self.objects.get(obj_id)
        if obj is None:
            raise LookupError(f"no object {obj_id} in this worker")
        return getattr(obj, method)(*resolved, **kwargs)

    def _resolve(self, arg: Any) -> Any:
        if isinstance(arg, Ref):
            return self.objects.get(arg.id)
        if isinstance(arg, ClipRef):
            clip = self.clips.get(arg.key)
            if clip is None:
                raise LookupError(f"clip {arg.key} is not here")
            self.clips.move_to_end(arg.key)
            return clip
        return arg

    def _run(self, rid: int | None, work: Awaitable[Any]) -> None:
        async def run() -> None:
            try:
                reply: tuple[Any, ...] = ("ok", rid, await work)
            except Exception as exc:
                if not isinstance(exc, (LookupError, ChorusError)):
                    log.exception("worker: request %s failed", rid)
                reply = ("err", rid, wire.describe_error(exc))
            if rid is not None and not self._writer.is_closing():
                self._writer.write(wire.pack(reply))

        task = asyncio.get_running_loop().create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        for obj in list(self.objects.values()):
            with contextlib.suppress(Exception):
                await _close(obj)
        self.objects.clear()


async def _close(obj: Any) -> None:
    close = getattr(obj, "close", None)
    if close is not None:
        result = close()
        if inspect.isawaitable(result):
            await result


def die_with_parent() -> None:
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() == 1:  # the parent died before prctl: nobody to serve
        os._exit(0)


async def serve(fd: int, factories: dict[str, Factory]) -> None:
    """Carry out the parent's messages on socket `fd` until it closes."""
    sock = socket.socket(fileno=fd)
    reader, writer = await asyncio.open_unix_connection(sock=sock)
    host = Host(writer, factories)
    writer.write(wire.pack(("ready", os.getpid())))
    try:
        while True:
            try:
                message = await wire.read(reader)
            except (asyncio.IncompleteReadError, ConnectionError):
                break
            await host.handle(message)
    finally:
        await host.close()
        writer.close()
