"""Requests from one node to another over the bus, and their answers.

Some things live in one process only (a call's media legs, timers and lock live on the node
that placed it), so a request about them that lands on another node is sent to that node.
Each node listens on `node-rpc:{<node>}`. A request is
`{"id", "method", "args", "reply_to"}`; the answer goes to `reply_to` (the asking node's own
channel) as `{"id", "result"}` or `{"id", "error": {"status", "code", "message"}}`. One
channel per node, not one per request: a Redis subscription costs a round trip, a request
should not.

Pub/sub is fire-and-forget: a node that is gone, frozen or was cut off from Redis when the
request was sent never answers. So the asking node checks the other's heartbeat first (a node
that is known gone answers at once) and never waits longer than a timeout; both are a 503
`node_unreachable`. An error the other node raises (`ChorusError`) comes back with its status,
code and message, so the API answers exactly as that node would have.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from voice.bus import Bus, Message, Subscription
from voice.errors import (
    BadRequest,
    ChorusError,
    Conflict,
    Forbidden,
    NotFound,
    Unauthorized,
    Unavailable,
)

log = logging.getLogger("chorus.rpc")

Handler = Callable[[dict[str, Any]], Awaitable[Any]]  # JSON-able args -> JSON-able result
TIMEOUT_S = 5.0

# An error that comes back is raised again as the class its status names, so code that
# catches e.g. `Conflict` treats a forwarded refusal like a local one.
_KINDS = (BadRequest, Unauthorized, Forbidden, NotFound, Conflict, Unavailable)
_BY_STATUS: dict[int, type[ChorusError]] = {cls.status: cls for cls in _KINDS}


class NodeUnreachable(Unavailable):
    code = "node_unreachable"


def channel(node_id: str) -> str:
    return f"node-rpc:{{{node_id}}}"


class NodeRpc:
    def __init__(
        self,
        bus: Bus,
        node_id: str,
        *,
        alive: Callable[[str], Awaitable[bool]] | None = None,
        timeout_s: float = TIMEOUT_S,
    ) -> None:
        self.bus = bus
        self.node_id = node_id
        self.timeout_s = timeout_s
        self._alive = alive
        self._handlers: dict[str, Handler] = {}
        self._pending: dict[str, asyncio.Future[Any]] = {}
        self._subscription: Subscription | None = None
        self._reader: asyncio.Task[None] | None = None
        self._running: set[asyncio.Task[None]] = set()
        self._closed = False

    def handle(self, method: str, handler: Handler) -> None:
        self._handlers[method] = handler

    async def start(self) -> None:
        self._subscription = await self.bus.subscribe(channel(self.node_id))
        self._reader = asyncio.create_task(self._read(), name="chorus-node-rpc")

    async def close(self) -> None:
        """Stops taking requests (those being served are cancelled) and fails the requests
        this node is waiting on."""
        self._closed = True
        if self._subscription is not None:
            await self._subscription.close()
            self._subscription = None
        tasks = [t for t in (self._reader, *self._running) if t is not None]
        self._reader = None
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for future in self._pending.values():
            if not future.done():
                future.set_exception(NodeUnreachable("this node is shutting down"))

    async def call(
        self, node_id: str, method: str, args: dict[str, Any], *, timeout_s: float | None = None
    ) -> Any:
        """Runs `method` on `node_id` and returns its result, or raises what it raised."""
        if self._closed:  # no reader to take the answer
            raise NodeUnreachable("this node is shutting down")
        if self._alive is not None and not await self._alive(node_id):
            log.warning("%s for node %s: that node is gone", method, node_id)
            raise NodeUnreachable("the node serving this request is gone")
        request_id = uuid.uuid4().hex
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future  # before publishing: the answer may be quick
        request = {
            "id": request_id,
            "method": method,
            "args": args,
            "reply_to": channel(self.node_id),
        }
        try:
            await self.bus.publish(channel(node_id), request)
            async with asyncio.timeout(timeout_s if timeout_s is not None else self.timeout_s):
                return await future
        except TimeoutError:
            log.warning("%s for node %s: no answer in time", method, node_id)
            raise NodeUnreachable("the node serving this request did not answer in time") from None
        finally:
            self._pending.pop(request_id, None)

    async def _read(self) -> None:
        assert self._subscription is not None
        async for message in self._subscription:
            if "method" in message:
                # One task per request: a slow one (opening a media leg) holds up no other.
                task = asyncio.create_task(self._serve(message))
                self._running.add(task)
                task.add_done_callback(self._running.discard)
            else:
                self._settle(message)

    def _settle(self, reply: Message) -> None:
        future = self._pending.get(str(reply.get("id")))
        if future is None or future.done():
            return  # the asker gave up already
        error = reply.get("error")
        if error is None:
            future.set_result(reply.get("result"))
            return
        status = int(error.get("status", 500))
        cls = _BY_STATUS.get(status, ChorusError)
        future.set_exception(cls(error.get("message", ""), code=error.get("code"), status=status))

    async def _serve(self, request: Message) -> None:
        method = request.get("method")
        reply: Message = {"id": request.get("id")}
        handler = self._handlers.get(str(method))
        try:
            if handler is None:  # a node of another version: say so instead of timing out
                raise ChorusError(f"no request {method!r} here", code="unknown_request", status=501)
            reply["result"] = await handler(request.get("args") or {})
        except ChorusError as exc:
            reply["error"] = {"status": exc.status, "code": exc.code, "message": exc.message}
        except Exception:
            log.exception("node request %s failed", method)
            reply["error"] = {
                "status": 500,
                "code": "internal_error",
                "message": "the node serving the request failed",
            }
        try:
            await self.bus.publish(str(request["reply_to"]), reply)
        except (ChorusError, KeyError) as exc:  # the asker times out: nothing else to do
            log.warning("node request %s: answer not sent (%s)", method, exc)
