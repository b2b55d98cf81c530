"""The bus contract: the same tests against LocalBus (one process) and RedisBus (many nodes).
Two buses made by `make_bus` are two nodes of one deployment."""

from __future__ import annotations

import asyncio
import time

from tests.waiting import next_message, until
from voice.presence import Presence

VALUE = {"s": "文字 and text", "n": 3, "f": 0.25, "none": None, "ok": True, "list": [1, "two"]}


# ------------------------------------------------------------------------------- values


async def test_values_round_trip_and_are_shared_by_nodes(make_bus):
    a, b = await make_bus(), await make_bus()
    assert await a.get("call:{c1}") is None
    await a.put("call:{c1}", VALUE)
    assert await b.get("call:{c1}") == VALUE
    await b.put("call:{c1}", {"v": 2})
    assert await a.get("call:{c1}") == {"v": 2}
    await a.delete("call:{c1}")
    assert await b.get("call:{c1}") is None
    await a.delete("call:{c1}")  # deleting what is not there is fine


async def test_values_expire_and_a_put_without_ttl_keeps_them(bus):
    await bus.put("k:{1}", {"v": 1}, ttl_s=0.2)
    await bus.put("k:{2}", {"v": 2}, ttl_s=0.2)
    await bus.put("k:{2}", {"v": 3})  # replaced without a TTL: stays
    assert await bus.get("k:{1}") == {"v": 1}

    async def expired() -> bool:
        return await bus.get("k:{1}") is None

    await until(expired)
    assert await bus.get("k:{2}") == {"v": 3}


async def test_put_if_absent_settles_a_race_between_nodes(make_bus):
    a, b = await make_bus(), await make_bus()
    results = await asyncio.gather(
        *[
            (a if i % 2 else b).put_if_absent("call:{x}:answer", {"device": f"d{i}"}, ttl_s=60)
            for i in range(20)
        ]
    )
    assert results.count(True) == 1
    winner = f"d{results.index(True)}"
    assert await a.get("call:{x}:answer") == {"device": winner}
    assert not await b.put_if_absent("call:{x}:answer", {"device": "late"})
    await b.delete("call:{x}:answer")
    assert await a.put_if_absent("call:{x}:answer", {"device": "again"})


async def test_put_if_absent_succeeds_again_once_the_claim_expired(bus):
    assert await bus.put_if_absent("claim:{1}", {"n": 1}, ttl_s=0.2)
    assert not await bus.put_if_absent("claim:{1}", {"n": 2}, ttl_s=0.2)

    async def free() -> bool:
        return await bus.put_if_absent("claim:{1}", {"n": 3}, ttl_s=5)

    await until(free)
    assert await bus.get("claim:{1}") == {"n": 3}


# --------------------------------------------------------------------------------- sets


async def test_member_sets_are_shared_by_nodes(make_bus):
    a, b = await make_bus(), await make_bus()
    assert await a.members("calls-of:{u}") == set()
    await a.add_member("calls-of:{u}", "c1")
    await b.add_member("calls-of:{u}", "c2")
    await b.add_member("calls-of:{u}", "c2")
    assert await a.members("calls-of:{u}") == {"c1", "c2"}
    await b.remove_member("calls-of:{u}", "c1")
    await b.remove_member("calls-of:{u}", "nope")
    assert await a.members("calls-of:{u}") == {"c2"}
    await a.remove_member("calls-of:{u}", "c2")
    assert await b.members("calls-of:{u}") == set()
    await a.remove_member("never:{u}", "x")


async def test_members_with_a_ttl_expire_unless_refreshed(bus):
    await bus.add_member("presence:{u}", "gone", ttl_s=0.3)
    await bus.add_member("presence:{u}", "kept", ttl_s=0.3)
    await bus.add_member("presence:{u}", "forever")
    assert await bus.members("presence:{u}") == {"gone", "kept", "forever"}
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:  # "kept" is refreshed like a heartbeat
        await bus.add_member("presence:{u}", "kept", ttl_s=0.3)
        await asyncio.sleep(0.05)
    assert await bus.members("presence:{u}") == {"kept", "forever"}

    async def only_forever() -> bool:
        return await bus.members("presence:{u}") == {"forever"}

    await until(only_forever)


async def test_adding_a_member_again_without_ttl_makes_it_permanent(bus):
    await bus.add_member("s:{1}", "m", ttl_s=0.2)
    await bus.add_member("s:{1}", "m")
    await asyncio.sleep(0.4)
    assert await bus.members("s:{1}") == {"m"}


# ------------------------------------------------------------------------------- events


async def test_events_reach_every_subscriber_on_every_node_in_order(make_bus):
    a, b = await make_bus(), await make_bus()
    on_a = await a.subscribe("user:{u}", "device:{d}")
    on_b = await b.subscribe("user:{u}")
    for n in range(50):
        await b.publish("user:{u}", {"n": n})
    await a.publish("device:{d}", VALUE)
    await a.publish("other", {"n": -1})  # nobody listens: dropped
    assert [await next_message(on_a) for _ in range(51)] == [{"n": n} for n in range(50)] + [VALUE]
    assert [await next_message(on_b) for _ in range(50)] == [{"n": n} for n in range(50)]
    await on_a.close()
    await on_b.close()


async def test_a_closed_subscription_ends_and_the_others_keep_receiving(make_bus):
    a, b = await make_bus(), await make_bus()
    first = await a.subscribe("user:{u}")
    second = await a.subscribe("user:{u}")
    received = []

    async def drain() -> None:
        async for message in first:
            received.append(message)

    task = asyncio.create_task(drain())
    await first.close()
    await asyncio.wait_for(task, 5)  # iteration ends once closed
    await b.publish("user:{u}", {"n": 1})
    assert await next_message(second) == {"n": 1}
    assert received == []
    await second.close()
    again = await a.subscribe("user:{u}")  # subscribing after everyone left works
    await b.publish("user:{u}", {"n": 2})
    assert await next_message(again) == {"n": 2}
    await again.close()


async def test_closing_the_bus_ends_its_subscriptions(make_bus):
    a = await make_bus()
    subscription = await a.subscribe("user:{u}")

    async def drain() -> list:
        return [m async for m in subscription]

    task = asyncio.create_task(drain())
    await asyncio.sleep(0)
    await a.close()
    assert await asyncio.wait_for(task, 5) == []


# ----------------------------------------------------------------------------- presence


async def test_presence_is_shared_and_a_dead_node_devices_expire(make_bus):
    a, b = await make_bus(), await make_bus()
    node_a, node_b = Presence(a, ttl_s=0.3), Presence(b, ttl_s=0.3)
    await node_a.connect("u1", "phone")
    await node_b.connect("u1", "laptop")
    assert await node_b.devices("u1") == {"phone", "laptop"}
    await asyncio.sleep(1.0)  # three TTLs: the heartbeats keep both
    assert await node_a.devices("u1") == {"phone", "laptop"}
    await node_a.close()  # node A dies: no heartbeat, no disconnect

    async def only_laptop() -> bool:
        return await node_b.devices("u1") == {"laptop"}

    await until(only_laptop)
    await node_b.disconnect("u1", "laptop")
    assert await node_b.devices("u1") == frozenset()
    await node_b.close()


async def test_presence_counts_a_device_connected_twice(bus):
    presence = Presence(bus)
    await presence.connect("u1", "phone")
    await presence.connect("u1", "phone")  # reconnected before the old socket was noticed
    await presence.disconnect("u1", "phone")
    assert await presence.devices("u1") == {"phone"}
    await presence.disconnect("u1", "phone")
    assert await presence.devices("u1") == frozenset()
    await presence.close()
