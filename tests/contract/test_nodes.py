"""Two Chorus nodes on loopback sharing one Redis and one PostgreSQL, driven through the API
like a load balancer would: a request may land on either node."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from types import SimpleNamespace

import pytest
import websockets

from api.runtime import Runtime
from tests.backends import PostgresServer, RedisServer
from tests.browser.harness import Server
from tests.peers import SinePeer
from tests.service import Client, running
from tests.waiting import until
from voice.settings import Settings


@contextlib.asynccontextmanager
async def two_nodes(tmp_path, redis_server: RedisServer, postgres_server: PostgresServer):
    shared = {
        "redis_url": redis_server.url,
        "redis_key_prefix": f"n{uuid.uuid4().hex[:8]}:",
        "database_url": postgres_server.url(postgres_server.create_database()),
        "sample_hotlines": False,
    }
    async with (
        running(tmp_path / "a", **shared) as node_a,
        running(tmp_path / "b", **shared) as node_b,
    ):
        yield node_a, node_b


async def test_two_nodes_share_accounts_records_presence_and_call_signalling(
    tmp_path, redis_server, postgres_server
):
    async with two_nodes(tmp_path, redis_server, postgres_server) as (node_a, node_b):
        # Sign up on A, log in on B; a token from either node is good on both (one signing
        # key, in the database).
        await node_a.client().ok(
            "POST", "/v1/users", 201, json={"username": "alice", "password": "secret-pw"}
        )
        bob = await node_a.client().sign_up("bob")
        alice = node_b.client()
        session = await alice.ok(
            "POST", "/v1/sessions", json={"username": "alice", "password": "secret-pw"}
        )
        alice.token = session["token"]
        assert (await alice.ok("GET", "/v1/me"))["username"] == "alice"
        await alice.ok("POST", "/v1/contacts", 201, json={"username": "bob", "group": "work"})
        contacts = await node_a.client(alice.token).ok("GET", "/v1/contacts")
        assert [(c["username"], c["group"]) for c in contacts] == [("bob", "work")]

        # Bob's app is connected to node A; node B sees it in presence.
        bob_phone = await bob.events("phone")
        bob_id = (await bob.ok("GET", "/v1/me"))["id"]

        async def b_sees_the_phone() -> bool:
            return "phone" in await node_b.runtime.calls.presence.devices(bob_id)

        await until(b_sees_the_phone)

        # Alice calls through node B: bob's phone on node A rings, and hears the hang-up.
        caller = SinePeer(600.0)
        try:
            created = await alice.ok(
                "POST", "/v1/calls", 201, json={"to": "bob", "sdp": await caller.offer()}
            )
            call_id = created["call_id"]
            assert created["state"] == "ringing"
            incoming = await bob_phone.next("call.incoming", lambda e: e["call_id"] == call_id)
            assert incoming["from"] == "alice"
            # The call is live state in Redis: node A answers questions about it too.
            assert (await bob.ok("GET", f"/v1/calls/{call_id}"))["state"] == "ringing"
            await alice.ok("POST", f"/v1/calls/{call_id}/hangup")
            ended = await bob_phone.state(call_id, "ended")
            assert ended["reason"] == "cancelled"
        finally:
            await caller.close()
            await bob.close()
        history = await bob.ok("GET", "/v1/calls")  # records in PostgreSQL, asked through A
        assert [(c["call_id"], c["reason"]) for c in history] == [(call_id, "cancelled")]

        async def phone_gone() -> bool:
            return not await node_b.runtime.calls.presence.devices(bob_id)

        await until(phone_gone)  # the socket closed on A: B sees bob offline


async def test_nodes_starting_together_on_a_fresh_database(tmp_path, redis_server, postgres_server):
    """A first deployment: migrations, deployment secrets and the sample hotlines are set up
    once even when every node starts at the same moment."""
    url = postgres_server.url(postgres_server.create_database())
    settings = [
        Settings(
            data_dir=tmp_path / name,
            database_url=url,
            redis_url=redis_server.url,
            redis_key_prefix=f"s{uuid.uuid4().hex[:8]}:",
            admin_key="k",
            sip_port=0,  # no SIP front (worker processes) for this test
        )
        for name in ("a", "b")
    ]
    started = await asyncio.gather(*(Runtime.start(s) for s in settings), return_exceptions=True)
    try:
        assert not [r for r in started if isinstance(r, BaseException)], started
        numbers = await started[0].hotline.numbers()
        assert sorted(number for number, _ in numbers) == ["114", "12580"]
    finally:
        for runtime in started:
            if isinstance(runtime, Runtime):
                await runtime.stop()


async def test_a_node_answers_503_while_a_backend_is_down_and_recovers_by_itself(
    tmp_path, fresh_redis, postgres_server
):
    async with running(
        tmp_path / "a",
        redis_url=fresh_redis.url,
        database_url=postgres_server.url(postgres_server.create_database()),
        sample_hotlines=False,
    ) as node:
        alice = await node.client().sign_up("alice")
        url = node.base_url.replace("http", "ws", 1) + f"/v1/events?token={alice.token}"

        async def refused_socket() -> int:
            async with websockets.connect(url) as ws:
                with pytest.raises(websockets.ConnectionClosed):
                    await asyncio.wait_for(ws.recv(), 10)
                return ws.close_code

        await asyncio.to_thread(postgres_server.stop)
        try:
            response = await alice.request("GET", "/v1/contacts")
            assert response.status_code == 503, response.text
            assert response.json()["error"]["code"] == "unavailable"
            assert await refused_socket() == 1013  # "try again later", not "bad token"
        finally:
            await asyncio.to_thread(postgres_server.start)

        async def contacts_again() -> bool:
            return (await alice.request("GET", "/v1/contacts")).status_code == 200

        await until(contacts_again, timeout=10, every=0.05)

        fresh_redis.kill()
        try:
            response = await alice.request("GET", "/v1/calls/" + "0" * 32)
            assert response.status_code == 503, response.text
            assert await refused_socket() == 1013
        finally:
            fresh_redis.start()

        async def events_again() -> bool:
            try:
                events = await alice.events()
            except (OSError, websockets.ConnectionClosed, TimeoutError):
                return False
            await events.close()
            return True

        await until(events_again, timeout=10, every=0.1)


async def test_when_a_node_dies_its_calls_end_for_the_other_party_within_seconds(
    tmp_path, fresh_redis, postgres_server
):
    """Node A (a real `chorus serve` process) places alice's call to bob, whose app is on
    node B; A is SIGKILLed while bob's devices ring. B notices A's heartbeat expire and ends
    the call (`failed`): bob's device stops ringing, the record is final, bob is not busy."""
    database = postgres_server.url(postgres_server.create_database())
    shared = ("--redis-url", fresh_redis.url, "--database-url", database)
    node_a = Server(tmp_path / "a", None, *shared, "--sip-port", "0")
    await node_a.start()
    try:
        async with running(
            tmp_path / "b", redis_url=fresh_redis.url, database_url=database, sample_hotlines=False
        ) as node_b:
            bob = await node_b.client().sign_up("bob")
            bob_phone = await bob.events("phone")
            alice = Client(SimpleNamespace(base_url=node_a.base_url))  # type: ignore[arg-type]
            await alice.sign_up("alice")
            peer = SinePeer(440)
            rooms_opened: list[SinePeer] = []
            try:
                # Alice also runs a room on A, with herself in it.
                room = await alice.ok("POST", "/v1/rooms", 201, json={"name": "ops"})
                room_peer = SinePeer(660)
                rooms_opened.append(room_peer)
                body = {"sdp": await room_peer.offer()}
                path = f"/v1/rooms/{room['room_id']}/participants"
                joined = await alice.ok("POST", path, 201, json=body)
                await room_peer.accept_answer(joined["sdp"])
                placed = await alice.ok(
                    "POST", "/v1/calls", 201, json={"to": "bob", "sdp": await peer.offer()}
                )
                call_id = placed["call_id"]
                await bob_phone.next("call.incoming", lambda e: e["call_id"] == call_id)
                node_a.process.kill()  # no shutdown: its calls are left behind in Redis
                await node_a.process.wait()
                died = asyncio.get_running_loop().time()
                ended = await bob_phone.next(
                    "call.state",
                    lambda e: e["call_id"] == call_id and e["state"] == "ended",
                    timeout=30,
                )
                took = asyncio.get_running_loop().time() - died
                assert ended["reason"] == "failed"
                view = await bob.ok("GET", f"/v1/calls/{call_id}")
                assert view["state"] == "ended" and view["reason"] == "failed"
                # The sweep is bounded by the heartbeat TTL (6 s) plus one beat (2 s).
                assert took < 20, took
                alice_b = node_b.client(alice.token)
                again = await alice_b.ok(
                    "POST", "/v1/calls", 201, json={"to": "bob", "sdp": await peer.offer()}
                )
                assert again["state"] == "ringing"  # bob is not left "busy"
                await alice_b.ok("POST", f"/v1/calls/{again['call_id']}/hangup")

                # B took the room over, empty: alice joins it again through B.
                async def emptied() -> bool:
                    view = await alice_b.ok("GET", f"/v1/rooms/{room['room_id']}")
                    return view["participants"] == []

                await until(emptied, timeout=20)
                rejoin = SinePeer(660)
                rooms_opened.append(rejoin)
                await alice_b.ok("POST", path, 201, json={"sdp": await rejoin.offer()})
            finally:
                for opened in rooms_opened:
                    await opened.close()
                await peer.close()
                await bob.close()
    finally:
        await node_a.stop()
