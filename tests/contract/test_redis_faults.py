"""What only the Redis bus can go through: Redis going away and coming back, and how it lays
out keys and connections."""

from __future__ import annotations

import time

import pytest
from redis.asyncio import Redis

from tests.backends import RedisServer, SentinelServer
from tests.waiting import next_message, until, until_heard
from voice.bus.redis import RedisBus
from voice.errors import Unavailable
from voice.presence import Presence

FAST = {"timeout_s": 1.0, "backoff_max_s": 0.2}


async def started(url: str, prefix: str = "t:", **options) -> RedisBus:
    bus = RedisBus(url, prefix=prefix, **{**FAST, **options})
    await bus.start()
    return bus


async def test_a_redis_restart_is_a_503_meanwhile_then_everything_works_again(
    fresh_redis: RedisServer,
):
    node_a, node_b = await started(fresh_redis.url), await started(fresh_redis.url)
    try:
        events = await node_a.subscribe("user:{u}")
        await node_b.publish("user:{u}", {"n": 0})
        assert await next_message(events) == {"n": 0}
        presence = Presence(node_a, ttl_s=0.6)  # heartbeat every 0.2 s
        await presence.connect("u", "phone")

        fresh_redis.kill()
        for call in (
            node_b.get("call:{c}"),
            node_b.put("call:{c}", {"v": 1}),
            node_b.put_if_absent("call:{c}:answer", {"d": 1}),
            node_b.add_member("presence:{u}", "d", ttl_s=5),
            node_b.members("presence:{u}"),
            node_b.publish("user:{u}", {"n": -1}),
            node_b.subscribe("device:{d}"),
        ):
            started_at = time.monotonic()
            with pytest.raises(Unavailable):
                await call
            assert time.monotonic() - started_at < 3.0  # bounded, not hanging

        fresh_redis.start()  # same port, every key lost (no persistence)

        async def works() -> bool:
            try:
                await node_b.put("call:{c}", {"v": 2})
                return await node_a.get("call:{c}") == {"v": 2}
            except Unavailable:
                return False

        await until(works, timeout=10, every=0.05)

        # The old subscription resumes by itself: publish until node A hears it (what is
        # published before it has resubscribed is lost, as pub/sub is fire-and-forget).
        await until_heard(lambda: node_b.publish("user:{u}", {"n": 1}), events, {"n": 1})
        assert node_a.reconnects >= 1

        # The restart lost every key; node A's heartbeat writes its devices back.
        async def phone_back() -> bool:
            return await node_b.members("presence:{u}") == {"phone"}

        await until(phone_back, timeout=5)
        await presence.close()
        fresh = await node_a.subscribe("device:{d}")
        await node_b.publish("device:{d}", {"n": 2})
        assert await next_message(fresh) == {"n": 2}
    finally:
        await node_a.close()
        await node_b.close()


async def test_a_node_does_not_start_against_a_redis_it_cannot_reach(fresh_redis: RedisServer):
    fresh_redis.kill()
    bus = RedisBus(fresh_redis.url, **FAST)
    started_at = time.monotonic()
    with pytest.raises(Unavailable):
        await bus.start()
    assert time.monotonic() - started_at < 3.0
    await bus.close()


async def test_one_pubsub_connection_carries_every_subscription(redis_server: RedisServer):
    bus = await started(redis_server.url, prefix="one:")
    raw = Redis.from_url(redis_server.url)
    try:
        subscriptions = [
            await bus.subscribe(f"user:{{u{i}}}", f"device:{{d{i}}}") for i in range(20)
        ]
        clients = await raw.client_list()
        subscribed = [c for c in clients if int(c.get("sub", 0)) > 0 and "one:" not in c["cmd"]]
        assert len(subscribed) == 1, clients
        assert int(subscribed[0]["sub"]) == 40
        for subscription in subscriptions[:10]:
            await subscription.close()

        async def unsubscribed() -> bool:
            clients = await raw.client_list()
            return sum(int(c.get("sub", 0)) for c in clients) == 20

        await until(unsubscribed)
    finally:
        await bus.close()
        await raw.aclose()


async def test_keys_keep_their_hash_tags_behind_the_prefix(redis_server: RedisServer):
    bus = await started(redis_server.url, prefix="chorus-test:")
    raw = Redis.from_url(redis_server.url, decode_responses=True)
    try:
        await bus.put("call:{abc}", {"v": 1}, ttl_s=30)
        await bus.add_member("presence:{u1}", "phone", ttl_s=30)
        await bus.add_member("calls-of:{u1}", "abc")
        assert await raw.get("chorus-test:call:{abc}") == '{"v":1}'
        assert 0 < await raw.pttl("chorus-test:call:{abc}") <= 30_000
        # A set of members with TTLs expires as a whole with its last member...
        assert 0 < await raw.pttl("chorus-test:presence:{u1}") <= 30_000
        # ...a set without TTLs does not.
        assert await raw.pttl("chorus-test:calls-of:{u1}") == -1
        assert await raw.keys("call:*") == []  # nothing outside the prefix
    finally:
        await bus.close()
        await raw.aclose()


def test_a_prefix_cannot_break_the_hash_tags():
    with pytest.raises(ValueError):
        RedisBus("redis://127.0.0.1:1/0", prefix="{x}")


async def test_through_sentinel_a_failover_to_the_replica_is_survived():
    """`redis+sentinel://`: the master dies, the sentinel promotes its replica, and the bus
    carries on against the new master (commands and events), keeping replicated state."""
    master = RedisServer()
    master.start()
    replica = RedisServer(replica_of=master.port)
    sentinel = SentinelServer(master.port)
    bus = None
    try:
        replica.start()
        sentinel.start()
        watcher = Redis(port=sentinel.port)
        try:
            await until(lambda: _knows_replica(watcher, sentinel.name), timeout=20, every=0.2)
        finally:
            await watcher.aclose()
        bus = await started(f"redis+sentinel://127.0.0.1:{sentinel.port}/{sentinel.name}")
        await bus.put("call:{x}", {"n": 1})
        direct = Redis(port=replica.port)
        try:
            await until(lambda: _has(direct, "t:call:{x}"), timeout=10, every=0.1)
        finally:
            await direct.aclose()
        events = await bus.subscribe("user:{u}")

        master.kill()  # down after 1 s, then the sentinel fails over to the replica

        async def works_again() -> bool:
            try:
                await bus.put("probe:{p}", {"ok": True})
                return True
            except Unavailable:
                return False

        started_at = time.monotonic()
        await until(works_again, timeout=30, every=0.2)
        print(f"failover survived in {time.monotonic() - started_at:.1f} s")
        assert await bus.get("call:{x}") == {"n": 1}  # replicated before the master died

        async def delivered() -> bool:
            try:
                await bus.publish("user:{u}", {"after": "failover"})
                return await next_message(events, timeout=0.5) == {"after": "failover"}
            except (Unavailable, TimeoutError):
                return False

        await until(delivered, timeout=20, every=0.2)  # the reader resubscribed there
    finally:
        if bus is not None:
            await bus.close()
        sentinel.close()
        replica.close()
        master.close()


async def _knows_replica(watcher: Redis, name: str) -> bool:
    return len(await watcher.sentinel_slaves(name)) > 0


async def _has(client: Redis, key: str) -> bool:
    return await client.get(key) is not None
