"""What only a Redis Cluster brings to the Redis bus: keys spread over several masters by their
hash tags, events published through one node and heard on another, and nodes that die.
(The bus contract itself runs against the cluster in test_bus.py.)"""

from __future__ import annotations

import time

import pytest
from redis.asyncio import Redis

from tests.backends import RedisClusterServer
from tests.waiting import next_message, until_heard
from voice.bus.redis import RedisBus
from voice.errors import Unavailable

FAST = {"timeout_s": 1.0, "backoff_max_s": 0.2}


async def started(url: str, prefix: str, **options) -> RedisBus:
    bus = RedisBus(url, prefix=prefix, **{**FAST, **options})
    await bus.start()
    return bus


def url_from(cluster: RedisClusterServer, first: int) -> str:
    """The cluster's URL listing node `first` first: the node a bus's pub/sub reader uses."""
    ports = cluster.ports[first:] + cluster.ports[:first]
    return "redis+cluster://" + ",".join(f"127.0.0.1:{port}" for port in ports) + "/"


async def owner(nodes: dict[int, Redis], key: str) -> int:
    """The port of the master holding `key` (each node counts only its own keys)."""
    slot = await next(iter(nodes.values())).execute_command("CLUSTER", "KEYSLOT", key)
    holding = [
        port
        for port, node in nodes.items()
        if await node.execute_command("CLUSTER", "COUNTKEYSINSLOT", slot) > 0
    ]
    assert len(holding) == 1, f"{key} held by {holding}"
    return holding[0]


async def subscribers(node: Redis, channel: str) -> int:
    """Subscribers of `channel` connected to this node (PUBSUB NUMSUB is per node)."""
    return dict(await node.pubsub_numsub(channel))[channel.encode()]


async def test_keys_with_different_hash_tags_land_on_different_nodes_and_all_work(
    redis_cluster: RedisClusterServer,
):
    a = await started(url_from(redis_cluster, 0), "spread:")
    b = await started(url_from(redis_cluster, 2), "spread:")
    nodes = {port: Redis(port=port) for port in redis_cluster.ports}
    try:
        owners = {}
        for n in range(12):
            tag = f"{{u{n}}}"
            await a.put(f"call:{tag}", {"n": n}, ttl_s=30)
            await a.add_member(f"presence:{tag}", "phone", ttl_s=30)
            await a.add_member(f"calls-of:{tag}", "c1")
            assert await b.put_if_absent(f"call:{tag}:answer", {"d": n}, ttl_s=30)
            assert not await a.put_if_absent(f"call:{tag}:answer", {"d": -1})
            assert await b.get(f"call:{tag}") == {"n": n}
            assert await b.members(f"presence:{tag}") == {"phone"}
            await b.remove_member(f"calls-of:{tag}", "c1")
            assert await a.members(f"calls-of:{tag}") == set()
            # The keys of one tag live together, on the master of the tag's slot.
            owners[tag] = await owner(nodes, f"spread:call:{tag}")
            for key in (f"presence:{tag}", f"call:{tag}:answer"):
                assert await owner(nodes, "spread:" + key) == owners[tag]
            await a.delete(f"call:{tag}")
            assert await b.get(f"call:{tag}") is None
        assert set(owners.values()) == set(redis_cluster.ports)  # every master holds some
    finally:
        await a.close()
        await b.close()
        for node in nodes.values():
            await node.aclose()


async def test_an_event_published_through_another_node_is_delivered(
    redis_cluster: RedisClusterServer,
):
    first, second, third = redis_cluster.ports
    listener = await started(url_from(redis_cluster, 0), "events:")
    talker = await started(url_from(redis_cluster, 2), "events:")
    nodes = {port: Redis(port=port) for port in redis_cluster.ports}
    try:
        events = await listener.subscribe("user:{u}")
        # The listener's one pub/sub connection is on the first node of its URL...
        assert [await subscribers(nodes[p], "events:user:{u}") for p in nodes] == [1, 0, 0]
        # ...and hears what is published through the others, or through another bus.
        await nodes[second].publish("events:user:{u}", '{"via":"second"}')
        assert await next_message(events) == {"via": "second"}
        await nodes[third].publish("events:user:{u}", '{"via":"third"}')
        assert await next_message(events) == {"via": "third"}
        for n in range(20):
            await talker.publish("user:{u}", {"n": n})
        assert [await next_message(events) for _ in range(20)] == [{"n": n} for n in range(20)]
        await events.close()
        assert await subscribers(nodes[first], "events:user:{u}") == 0
    finally:
        await listener.close()
        await talker.close()
        for node in nodes.values():
            await node.aclose()


async def test_the_reader_moves_to_another_node_and_a_dead_cluster_is_a_503():
    cluster = RedisClusterServer()  # a cluster of the test's own: it kills its nodes
    cluster.start()
    nodes = {port: Redis(port=port) for port in cluster.ports}
    bus = None
    try:
        first, second, third = cluster.ports
        bus = await started(cluster.url, "t:")
        # Keys on each master, before any dies.
        keys = {}
        for n in range(12):
            await bus.put(f"call:{{c{n}}}", {"n": n})
            keys.setdefault(await owner(nodes, f"t:call:{{c{n}}}"), f"call:{{c{n}}}")
        assert set(keys) == set(cluster.ports)
        events = await bus.subscribe("user:{u}")
        assert await subscribers(nodes[first], "t:user:{u}") == 1

        await nodes.pop(first).aclose()
        cluster.nodes[0].kill()  # the reader's node: it reconnects to the next one

        await until_heard(lambda: nodes[third].publish("t:user:{u}", '{"n":1}'), events, {"n": 1})
        assert bus.reconnects >= 1
        assert await subscribers(nodes[second], "t:user:{u}") == 1
        # The live masters' keys still work; the dead one's are a 503, quickly.
        assert await bus.get(keys[second]) is not None
        assert await bus.get(keys[third]) is not None
        started_at = time.monotonic()
        with pytest.raises(Unavailable):
            await bus.get(keys[first])
        assert time.monotonic() - started_at < 3.0

        for node in cluster.nodes:
            node.kill()
        for call in (
            bus.get(keys[second]),
            bus.put(keys[third], {"v": 1}),
            bus.put_if_absent("call:{x}:answer", {"d": 1}),
            bus.add_member("presence:{u}", "d", ttl_s=5),
            bus.members("presence:{u}"),
            bus.delete(keys[second]),
            bus.publish("user:{u}", {"n": -1}),
            bus.subscribe("device:{d}"),
        ):
            started_at = time.monotonic()
            with pytest.raises(Unavailable):
                await call
            assert time.monotonic() - started_at < 3.0  # bounded, not hanging

        with pytest.raises(Unavailable):
            await started(cluster.url, "t:")  # a node does not start without its cluster
    finally:
        if bus is not None:
            await bus.close()
        for node in nodes.values():
            await node.aclose()
        cluster.close()


def test_a_cluster_url_names_its_nodes_and_no_database():
    with pytest.raises(ValueError):
        RedisBus("redis+cluster://127.0.0.1/")
    with pytest.raises(ValueError):
        RedisBus("redis+cluster://127.0.0.1:7000/3")
