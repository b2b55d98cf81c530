"""The Redis bus: live state and cross-node events shared by every node of a deployment.

Values are JSON strings (`SET`, with `PX` for a TTL and `NX` for `put_if_absent`). Member sets
are sorted sets whose score is the member's expiry in Redis server time (milliseconds, `+inf`
without a TTL), so a member added with a TTL by a node that then dies goes away by itself; the
small Lua scripts that read the server clock keep the nodes' clocks out of it. Keys are used as
the domain modules chose them (their `{...}` hash tags keep related keys in one Cluster slot),
behind an optional prefix.

Events use Redis pub/sub over ONE connection per process, owned by a reader task that
multiplexes every subscription of the process. When Redis goes away the reader reconnects with
capped exponential backoff and resubscribes everything; events published while it was gone are
lost (pub/sub is fire-and-forget). Commands are bounded: while Redis is unreachable they raise
`Unavailable` (503) after a short retry instead of hanging.

Redis Cluster (`redis+cluster://host:port,host:port/`): commands go through redis-py's cluster
client, which routes each key to the master of its slot. Every command and script here touches
exactly one key, so none can span slots. Classic PUBLISH is broadcast to every node of a
cluster, so the pub/sub reader keeps its ONE connection to any one node (the first of the URL
that answers, then the next on failure) and hears every event, whichever node it was published
through.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Iterable
from typing import Any, TypeVar

from redis.asyncio import Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.connection import AbstractConnection, Connection
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import ExponentialWithJitterBackoff, NoBackoff
from redis.exceptions import (
    ClusterDownError,
    ReadOnlyError,
    RedisClusterException,
    RedisError,
    SlotNotCoveredError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from voice.bus.base import Message
from voice.errors import Unavailable

log = logging.getLogger("chorus.bus")

T = TypeVar("T")

_CLOSED = object()
# Errors that mean "Redis is not there right now" (down, restarting, loading its data, a
# replica during a failover, a cluster that lost a master's slots), as opposed to a bug in a
# command.
_UNREACHABLE = (
    RedisConnectionError,
    RedisTimeoutError,
    ReadOnlyError,
    ClusterDownError,
    SlotNotCoveredError,
    OSError,
)

# add_member: ARGV[1] member, ARGV[2] TTL in ms or "" for none. The key itself expires with
# its longest-lived member, so a set whose members all expired does not linger.
_ADD_MEMBER = """
if ARGV[2] == '' then
  redis.call('ZADD', KEYS[1], '+inf', ARGV[1])
  redis.call('PERSIST', KEYS[1])
  return 1
end
local ttl = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local left = redis.call('PTTL', KEYS[1])
redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])
if left == -2 or (left >= 0 and left < ttl) then
  redis.call('PEXPIRE', KEYS[1], ttl)
end
return 1
"""

# members: drops the expired members, returns the others.
_MEMBERS = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
return redis.call('ZRANGE', KEYS[1], 0, -1)
"""


class RedisSubscription:
    def __init__(self, bus: RedisBus, channels: tuple[str, ...]):
        self._bus = bus
        self.channels = channels  # as Redis names them (prefixed)
        self.queue: asyncio.Queue[object] = asyncio.Queue()
        self.closed = False

    async def __aiter__(self) -> AsyncIterator[Message]:
        while True:
            item = await self.queue.get()
            if item is _CLOSED:
                return
            yield item  # type: ignore[misc]

    async def close(self) -> None:
        if not self.closed:
            self.closed = True
            await self._bus._unsubscribe(self)
            self.queue.put_nowait(_CLOSED)


class RedisBus:
    """`Bus` over Redis. `url` is a redis-py URL (`redis://[:password@]host:port/db`,
    `rediss://` for TLS, `unix:///path/to/socket`), or `redis+sentinel://h1:26379,h2:26379/
    <master name>[/db]` for a Redis watched by Sentinel (failover to a replica), or
    `redis+cluster://h1:6379,h2:6379/` for a Redis Cluster (any of its nodes; the client
    discovers the others)."""

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "",
        timeout_s: float = 5.0,
        backoff_min_s: float = 0.05,
        backoff_max_s: float = 2.0,
        ping_every_s: float = 5.0,
    ):
        if "{" in prefix or "}" in prefix:
            raise ValueError("the Redis key prefix must not contain '{' or '}' (hash tags)")
        self._url = url
        self._prefix = prefix
        self._timeout_s = timeout_s
        self._backoff = (backoff_min_s, backoff_max_s)
        self._ping_every_s = ping_every_s
        socket_timeout = max(0.5, min(2.0, timeout_s / 2))
        options: dict[str, Any] = {
            "socket_timeout": socket_timeout,
            "socket_connect_timeout": socket_timeout,
            "retry": Retry(ExponentialWithJitterBackoff(base=backoff_min_s, cap=0.5), retries=2),
            "retry_on_error": [RedisConnectionError, RedisTimeoutError],
            "health_check_interval": 30,
        }
        self._options = options
        self._sentinel = _sentinel_of(url)
        self._cluster = _cluster_of(url)
        self._redis: Redis | RedisCluster
        if self._cluster is not None:
            self._redis = RedisCluster(
                startup_nodes=[ClusterNode(host, port) for host, port in self._cluster], **options
            )
        elif self._sentinel is not None:
            # Sentinel: every connection (commands and the pub/sub reader alike) asks the
            # sentinels for the current master when it connects, so after a failover the
            # reconnect logic below lands on the new master by itself.
            sentinels, master, db = self._sentinel
            watcher = Sentinel(sentinels, socket_timeout=socket_timeout)
            self._redis = watcher.master_for(master, db=db, **options)
        else:
            self._redis = Redis.from_url(url, **options)
        self._add_member = self._redis.register_script(_ADD_MEMBER)
        self._members = self._redis.register_script(_MEMBERS)
        # pub/sub: what the process wants (channel -> local subscriptions), and what Redis
        # confirmed on the current connection; subscribe() waits for its confirmation so an
        # event published right after it returns (by any node) is delivered.
        self._subscribers: dict[str, set[RedisSubscription]] = {}
        self._confirmed: set[str] = set()
        self._in_flight: dict[str, int] = {}
        self._waiters: dict[str, list[asyncio.Future[None]]] = {}
        self._conn: AbstractConnection | None = None
        self._reader: asyncio.Task[None] | None = None
        self._down = False  # the pub/sub connection is lost and not yet restored
        self._wake = asyncio.Event()  # cuts the reader's backoff short (someone is waiting)
        self._closing = False
        self.reconnects = 0  # pub/sub connections made after the first (for tests, metrics)
        self._next_node = 0  # cluster: the node the pub/sub reader tries next

    # ------------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Checks Redis answers (a node does not start against a Redis it cannot reach) and
        starts the pub/sub reader."""
        try:
            await self._call(self._redis.ping())
        except Unavailable as exc:
            raise Unavailable(
                f"Redis at {self._where()} is not reachable: {exc.__cause__}"
            ) from exc
        self._reader = asyncio.create_task(self._read_forever(), name="chorus-redis-pubsub")

    async def close(self) -> None:
        self._closing = True
        if self._reader is not None:
            # redis-py may swallow a cancellation that lands inside a read with a timeout, so
            # cancel until the reader is really gone (it also stops by itself on `_closing`).
            reader, self._reader = self._reader, None
            while not reader.done():
                reader.cancel()
                await asyncio.wait({reader}, timeout=0.5)
            with contextlib.suppress(asyncio.CancelledError, Exception):
                reader.result()
        for subs in list(self._subscribers.values()):
            for sub in list(subs):
                sub.closed = True
                sub.queue.put_nowait(_CLOSED)
        self._subscribers.clear()
        self._fail_waiters()
        with contextlib.suppress(RedisError, OSError):
            await self._redis.aclose()

    # ---------------------------------------------------------------------------- events

    async def publish(self, channel: str, message: Message) -> None:
        await self._call(self._redis.publish(self._prefix + channel, _dump(message)))

    async def subscribe(self, *channels: str) -> RedisSubscription:
        if self._closing:
            raise Unavailable("the bus is closed")
        if self._reader is None:
            raise RuntimeError("RedisBus.start() was not called")
        names = tuple(dict.fromkeys(self._prefix + c for c in channels))
        sub = RedisSubscription(self, names)
        for name in names:
            self._subscribers.setdefault(name, set()).add(sub)
        pending = [name for name in names if name not in self._confirmed]
        if pending:
            loop = asyncio.get_running_loop()
            futures = []
            for name in pending:
                future: asyncio.Future[None] = loop.create_future()
                self._waiters.setdefault(name, []).append(future)
                futures.append(future)
            await self._send_subscribe(pending)
            # While the connection is down, try to reconnect now but give up sooner: the
            # caller (an app's events socket) is told to come back later.
            limit = self._timeout_s
            if self._down:
                self._wake.set()
                limit = min(limit, 1.0)
            try:
                async with asyncio.timeout(limit):
                    await asyncio.gather(*futures)
            except BaseException as exc:  # also cancelled: leave nothing subscribed behind
                for name, future in zip(pending, futures, strict=True):
                    future.cancel()
                    with contextlib.suppress(KeyError, ValueError):
                        self._waiters[name].remove(future)
                await sub.close()
                if isinstance(exc, (TimeoutError, Unavailable)):
                    raise Unavailable("live events (Redis) are not reachable, try again") from exc
                raise
        return sub

    async def _unsubscribe(self, sub: RedisSubscription) -> None:
        gone = []
        for name in sub.channels:
            subs = self._subscribers.get(name)
            if subs is None:
                continue
            subs.discard(sub)
            if not subs:
                del self._subscribers[name]
                self._confirmed.discard(name)
                gone.append(name)
        conn = self._conn
        if gone and conn is not None and conn.is_connected and not self._closing:
            # Best effort: if this fails the reader reconnects and subscribes only to what is
            # still wanted.
            with contextlib.suppress(RedisError, OSError):
                await conn.send_command("UNSUBSCRIBE", *gone, check_health=False)

    async def _send_subscribe(self, names: list[str]) -> None:
        conn = self._conn
        if conn is None or not conn.is_connected:
            return  # the reader subscribes to everything wanted once it is connected
        for name in names:
            self._in_flight[name] = self._in_flight.get(name, 0) + 1
        with contextlib.suppress(RedisError, OSError):
            await conn.send_command("SUBSCRIBE", *names, check_health=False)

    async def _read_forever(self) -> None:
        delay = self._backoff[0]
        connected_before = False
        while not self._closing:
            conn: AbstractConnection | None = None
            try:
                # A connection of our own, never handed out by a pool, that does not retry by
                # itself: this loop decides when to try again.
                conn = self._pubsub_connection()
                conn.retry = Retry(NoBackoff(), 0)
                await conn.connect()
                self._conn = conn
                self._confirmed.clear()
                self._in_flight.clear()
                if connected_before:
                    self.reconnects += 1
                if self._down:
                    log.warning("redis: pub/sub connection restored, resubscribing")
                connected_before, self._down = True, False
                wanted = list(self._subscribers)
                if wanted:
                    await self._send_subscribe(wanted)
                delay = self._backoff[0]
                await self._read(conn)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the reader must survive anything: it carries all events
                if not isinstance(exc, (*_UNREACHABLE, RedisError)):
                    log.exception("redis: pub/sub reader failed; reconnecting")
                elif not self._down:
                    log.warning("redis: pub/sub connection lost (%s); reconnecting", exc)
                self._down = True
            finally:
                if self._conn is conn:
                    self._conn = None
                self._confirmed.clear()
                if conn is not None:
                    with contextlib.suppress(Exception):
                        await conn.disconnect(nowait=True)
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay * random.uniform(0.5, 1.0))
            delay = min(delay * 2, self._backoff[1])

    async def _read(self, conn: AbstractConnection) -> None:
        waiting_for_pong = False
        while not self._closing:
            # push_request: with RESP3 the messages are pushes; hand them to us, not to
            # redis-py's push handler. With RESP2 they are plain replies either way.
            response = await conn.read_response(timeout=self._ping_every_s, push_request=True)
            if response is None:  # quiet: make sure the connection is still alive
                if waiting_for_pong:
                    raise RedisTimeoutError("no answer to PING on the pub/sub connection")
                await conn.send_command("PING", check_health=False)
                waiting_for_pong = True
                continue
            waiting_for_pong = False
            if not isinstance(response, list) or len(response) < 3:
                continue  # PONG outside subscribed mode
            kind, channel = _text(response[0]), _text(response[1])
            if kind == "message":
                self._deliver(channel, response[2])
            elif kind == "subscribe":
                left = self._in_flight.get(channel, 0) - 1
                if left > 0:
                    self._in_flight[channel] = left
                    continue
                self._in_flight.pop(channel, None)
                if channel in self._subscribers:
                    self._confirmed.add(channel)
                    for future in self._waiters.pop(channel, []):
                        if not future.done():
                            future.set_result(None)

    def _pubsub_connection(self) -> AbstractConnection:
        if not isinstance(self._redis, RedisCluster):
            return self._redis.connection_pool.make_connection()
        # Any node hears every PUBLISH of the cluster. Each attempt takes the next node: the
        # URL's first, then the URL's others and any the client discovered, so a dead node is
        # left behind.
        known = [(node.host, int(node.port)) for node in self._redis.get_nodes()]
        nodes = list(dict.fromkeys([*(self._cluster or []), *known]))
        host, port = nodes[self._next_node % len(nodes)]
        self._next_node += 1
        return Connection(host=host, port=port, **self._options)

    def _deliver(self, channel: str, data: Any) -> None:
        subs = self._subscribers.get(channel)
        if not subs:
            return
        try:
            message = json.loads(data)
        except ValueError:
            log.warning("redis: dropped a message that is not JSON on %s", channel)
            return
        for sub in list(subs):
            sub.queue.put_nowait(message)

    def _fail_waiters(self) -> None:
        for futures in self._waiters.values():
            for future in futures:
                if not future.done():
                    future.set_exception(Unavailable("the bus is closed"))
        self._waiters.clear()

    def _where(self) -> str:
        if self._cluster is not None:
            return f"cluster nodes {', '.join(f'{h}:{p}' for h, p in self._cluster)}"
        if self._sentinel is not None:
            sentinels, master, _ = self._sentinel
            return f"master {master!r} of sentinels {', '.join(f'{h}:{p}' for h, p in sentinels)}"
        kwargs = self._redis.connection_pool.connection_kwargs
        if "path" in kwargs:
            return str(kwargs["path"])
        return f"{kwargs.get('host', '?')}:{kwargs.get('port', '?')}"

    # ------------------------------------------------------------------------ live state

    async def get(self, key: str) -> Message | None:
        raw = await self._call(self._redis.get(self._prefix + key))
        return None if raw is None else json.loads(raw)

    async def put(self, key: str, value: Message, *, ttl_s: float | None = None) -> None:
        await self._call(self._redis.set(self._prefix + key, _dump(value), px=_ms(ttl_s)))

    async def put_if_absent(self, key: str, value: Message, *, ttl_s: float | None = None) -> bool:
        done = await self._call(
            self._redis.set(self._prefix + key, _dump(value), px=_ms(ttl_s), nx=True)
        )
        return bool(done)

    async def delete(self, key: str) -> None:
        await self._call(self._redis.delete(self._prefix + key))

    async def add_member(self, key: str, member: str, *, ttl_s: float | None = None) -> None:
        ttl = _ms(ttl_s)
        await self._call(
            self._add_member(keys=[self._prefix + key], args=[member, "" if ttl is None else ttl])
        )

    async def remove_member(self, key: str, member: str) -> None:
        await self._call(self._redis.zrem(self._prefix + key, member))

    async def members(self, key: str) -> set[str]:
        found: Iterable[bytes] = await self._call(self._members(keys=[self._prefix + key]))
        return {_text(m) for m in found}

    # -------------------------------------------------------------------------- helpers

    async def _call(self, command: Awaitable[T]) -> T:
        """Runs one command with an overall bound; an unreachable Redis is a 503."""
        try:
            async with asyncio.timeout(self._timeout_s):
                return await command
        except (*_UNREACHABLE, RedisClusterException) as exc:
            # The cluster client says "no node answers" as a RedisClusterException caused by
            # the connection error; its other RedisClusterExceptions are bugs, not outages.
            if isinstance(exc, RedisClusterException) and not isinstance(
                exc.__cause__, _UNREACHABLE
            ):
                raise
            raise Unavailable("live state (Redis) is not reachable, try again shortly") from exc


def _sentinel_of(url: str) -> tuple[list[tuple[str, int]], str, int] | None:
    """`redis+sentinel://host:26379,host2:26379/<master name>[/<db>]`: the sentinels, the
    master's name and the database; None for any other URL."""
    prefix = "redis+sentinel://"
    if not url.startswith(prefix):
        return None
    hosts, _, path = url[len(prefix) :].partition("/")
    name, _, db = path.partition("/")
    sentinels = _addresses(hosts, "a sentinel")
    if not name:
        raise ValueError("name the master: redis+sentinel://host:26379/<master name>")
    return sentinels, name, int(db) if db.isdigit() else 0


def _cluster_of(url: str) -> list[tuple[str, int]] | None:
    """`redis+cluster://host:6379,host2:6379/`: the nodes to discover the cluster from; None
    for any other URL."""
    prefix = "redis+cluster://"
    if not url.startswith(prefix):
        return None
    hosts, _, path = url[len(prefix) :].partition("/")
    if path.strip("/") not in ("", "0"):
        raise ValueError("a Redis Cluster has only database 0: redis+cluster://host:6379/")
    return _addresses(hosts, "a cluster node")


def _addresses(hosts: str, what: str) -> list[tuple[str, int]]:
    found = []
    for host in hosts.split(","):
        address, _, port = host.rpartition(":")
        if not address or not port.isdigit():
            raise ValueError(f"{what} is host:port, not {host!r}")
        found.append((address, int(port)))
    return found


def _dump(message: Message) -> str:
    return json.dumps(message, separators=(",", ":"))


def _ms(ttl_s: float | None) -> int | None:
    return None if ttl_s is None else max(1, round(ttl_s * 1000))


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
