"""Two Chorus nodes on loopback sharing one Redis and one PostgreSQL, driven through the API
like a load balancer would: a request may land on either node."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from types import SimpleNamespace

import pytest
import websockets

from api.runtime import Runtime
from conference.room import Actor
from tests.backends import PostgresServer, RedisServer
from tests.browser.harness import Server
from tests.loopback.test_calls import answer, place
from tests.loopback.test_hotline_calls import MAIN_HZ, tone_menu
from tests.loopback.test_rooms_media import _wait_mix, heard, join, tone_db
from tests.peers import SinePeer
from tests.rtp_peer import RtpPeer
from tests.service import ADMIN_KEY, Client, Service, running
from tests.sip_peers import Baresip, free_udp_port
from tests.waiting import until
from voice.errors import ChorusError, Conflict
from voice.rpc import NodeRpc, NodeUnreachable
from voice.settings import Settings

CALLER_HZ, CALLEE_HZ = 600.0, 1000.0


@contextlib.asynccontextmanager
async def nodes(
    count: int,
    tmp_path,
    redis_server: RedisServer,
    postgres_server: PostgresServer,
    *,
    sip: bool = False,
):
    """`count` nodes (named a, b, c...) on one Redis and one PostgreSQL, started together and
    stopped together when the test ends (with `sip`, each on a SIP port of its own)."""
    shared = {
        "redis_url": redis_server.url,
        "redis_key_prefix": f"n{uuid.uuid4().hex[:8]}:",
        "database_url": postgres_server.url(postgres_server.create_database()),
        "sample_hotlines": False,
    }
    managers = [
        running(tmp_path / chr(ord("a") + i), sip_port=free_udp_port() if sip else 0, **shared)
        for i in range(count)
    ]
    started = await asyncio.gather(*(m.__aenter__() for m in managers), return_exceptions=True)
    up = [m for m, node in zip(managers, started, strict=True) if isinstance(node, Service)]
    try:
        for node in started:
            if isinstance(node, BaseException):
                raise node
        yield tuple(started)
    finally:
        stopped = await asyncio.gather(
            *(m.__aexit__(None, None, None) for m in up), return_exceptions=True
        )
        for failure in stopped:
            if isinstance(failure, BaseException):
                raise failure


@contextlib.asynccontextmanager
async def two_nodes(
    tmp_path, redis_server: RedisServer, postgres_server: PostgresServer, *, sip: bool = False
):
    """Nodes A and B on one Redis and one PostgreSQL (with `sip`, each on a SIP port)."""
    async with nodes(2, tmp_path, redis_server, postgres_server, sip=sip) as (node_a, node_b):
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


@contextlib.asynccontextmanager
async def killable_a_and_b(tmp_path, fresh_redis, postgres_server):
    """Node A, a real `chorus serve` process a test may SIGKILL, and node B, on one Redis
    and one PostgreSQL: alice signed up through A, bob through B with his app ("phone")
    connected to B."""
    database = postgres_server.url(postgres_server.create_database())
    shared = ("--redis-url", fresh_redis.url, "--database-url", database)
    node_a = Server(tmp_path / "a", None, *shared, "--sip-port", "0")
    await node_a.start()
    try:
        async with running(
            tmp_path / "b", redis_url=fresh_redis.url, database_url=database, sample_hotlines=False
        ) as node_b:
            bob = await node_b.client().sign_up("bob")
            try:
                bob_phone = await bob.events("phone")
                alice = Client(SimpleNamespace(base_url=node_a.base_url))  # type: ignore[arg-type]
                await alice.sign_up("alice")
                yield SimpleNamespace(
                    node_a=node_a, node_b=node_b, alice=alice, bob=bob, bob_phone=bob_phone
                )
            finally:
                await bob.close()
    finally:
        await node_a.stop()


async def kill_a_and_see_the_call_fail(nodes, call_id: str) -> float:
    """SIGKILL node A (no shutdown: its calls are left behind in Redis); B ends the call
    `failed` for bob. Returns the seconds from the kill to bob's `ended`."""
    nodes.node_a.process.kill()
    await nodes.node_a.process.wait()
    died = time.monotonic()
    ended = await nodes.bob_phone.state(call_id, "ended", timeout=30)
    took = time.monotonic() - died
    assert ended["reason"] == "failed"
    view = await nodes.bob.ok("GET", f"/v1/calls/{call_id}")
    assert view["state"] == "ended" and view["reason"] == "failed"
    return took


async def bob_is_called_again_through_b(nodes, peer: SinePeer) -> Client:
    """Bob is not left busy or "in a call": alice, now through B, reaches him (and hangs
    up). Returns alice's client on B."""
    alice_b = nodes.node_b.client(nodes.alice.token)
    body = {"to": "bob", "sdp": await peer.offer()}
    again = await alice_b.ok("POST", "/v1/calls", 201, json=body)
    assert again["state"] == "ringing"
    await alice_b.ok("POST", f"/v1/calls/{again['call_id']}/hangup")
    return alice_b


async def test_when_a_node_dies_its_calls_end_for_the_other_party_within_seconds(
    tmp_path, fresh_redis, postgres_server
):
    """Node A (a real `chorus serve` process) places alice's call to bob, whose app is on
    node B; A is SIGKILLed while bob's devices ring. B notices A's heartbeat expire and ends
    the call (`failed`): bob's device stops ringing, the record is final, bob is not busy."""
    async with killable_a_and_b(tmp_path, fresh_redis, postgres_server) as nodes:
        alice = nodes.alice
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
            await nodes.bob_phone.next("call.incoming", lambda e: e["call_id"] == call_id)
            took = await kill_a_and_see_the_call_fail(nodes, call_id)
            # The sweep is bounded by the heartbeat TTL (6 s) plus one beat (2 s).
            assert took < 20, took
            alice_b = await bob_is_called_again_through_b(nodes, peer)

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


async def test_when_a_node_dies_mid_call_the_other_party_sees_the_call_end(
    tmp_path, fresh_redis, postgres_server
):
    """Bob (app on node B) is talking with alice, whose call node A carries (both legs are
    A's); A is SIGKILLed: bob's app sees the call end `failed` within seconds, his media stop
    and he can be called again."""
    async with killable_a_and_b(tmp_path, fresh_redis, postgres_server) as nodes:
        caller, callee = SinePeer(CALLER_HZ), SinePeer(CALLEE_HZ)
        try:
            placed = await nodes.alice.ok(
                "POST", "/v1/calls", 201, json={"to": "bob", "sdp": await caller.offer()}
            )
            await caller.accept_answer(placed["sdp"])
            call_id = placed["call_id"]
            await nodes.bob_phone.next("call.incoming", lambda e: e["call_id"] == call_id)
            body = {"sdp": await callee.offer(), "device_id": "phone"}
            answered = await nodes.bob.ok("POST", f"/v1/calls/{call_id}/answer", json=body)
            await callee.accept_answer(answered["sdp"])
            await callee.wait_for_audio(CALLER_HZ, timeout=20)  # talking, through A
            took = await kill_a_and_see_the_call_fail(nodes, call_id)
            assert took < 20, took  # TTL 6 s + a beat 2 s, on a busy box
            await bob_is_called_again_through_b(nodes, caller)
        finally:
            await caller.close()
            await callee.close()


# ------------------------------------------------------------ requests between nodes (rpc)


async def test_a_node_runs_requests_for_another_and_answers_with_its_result_or_error(make_bus):
    carrier = NodeRpc(await make_bus(), "node-a")
    asker = NodeRpc(await make_bus(), "node-b", timeout_s=0.5)
    release = asyncio.Event()

    async def echo(args):
        return {"got": args}

    async def slow(args):
        await release.wait()
        return "slow done"

    async def refuse(args):
        raise Conflict("the call was answered already", code="call_not_ringing")

    async def crash(args):
        raise RuntimeError("a bug")

    for name, handler in [("echo", echo), ("slow", slow), ("refuse", refuse), ("crash", crash)]:
        carrier.handle(name, handler)
    await carrier.start()
    await asker.start()
    try:
        # A slow request holds up no other; concurrent answers reach their own askers.
        pending = asyncio.create_task(asker.call("node-a", "slow", {}, timeout_s=5))
        answers = await asyncio.gather(*(asker.call("node-a", "echo", {"n": i}) for i in range(8)))
        assert answers == [{"got": {"n": i}} for i in range(8)]
        release.set()
        assert await pending == "slow done"

        # The carrier's refusal comes back as the same kind of error, status and code.
        with pytest.raises(Conflict) as refused:
            await asker.call("node-a", "refuse", {})
        assert (refused.value.status, refused.value.code) == (409, "call_not_ringing")
        assert refused.value.message == "the call was answered already"
        with pytest.raises(ChorusError) as crashed:
            await asker.call("node-a", "crash", {})
        assert (crashed.value.status, crashed.value.code) == (500, "internal_error")
        assert "a bug" not in crashed.value.message
        with pytest.raises(ChorusError) as unknown:
            await asker.call("node-a", "nothing", {})
        assert (unknown.value.status, unknown.value.code) == (501, "unknown_request")

        # Nobody listens for node-c: a 503 after the timeout, not a hang.
        started = time.monotonic()
        with pytest.raises(NodeUnreachable) as silent:
            await asker.call("node-c", "echo", {})
        assert 0.4 < time.monotonic() - started < 2
        assert (silent.value.status, silent.value.code) == (503, "node_unreachable")
    finally:
        await asker.close()
        await carrier.close()
    with pytest.raises(NodeUnreachable):  # a closed endpoint asks nothing more
        await asker.call("node-a", "echo", {})


async def test_a_request_for_a_node_known_gone_fails_at_once(make_bus):
    async def alive(node: str) -> bool:
        return node != "node-a"

    carrier = NodeRpc(await make_bus(), "node-a")
    asker = NodeRpc(await make_bus(), "node-b", alive=alive, timeout_s=5)

    async def echo(args):
        return args

    carrier.handle("echo", echo)
    await carrier.start()
    await asker.start()
    try:
        started = time.monotonic()
        with pytest.raises(NodeUnreachable):
            await asker.call("node-a", "echo", {})
        assert time.monotonic() - started < 0.5  # not the 5 s timeout
    finally:
        await asker.close()
        await carrier.close()


# ------------------------------------------------- a call placed on one node, served by another


@contextlib.asynccontextmanager
async def ringing_across_nodes(node_a, node_b):
    """Alice's app on node A calls bob, whose phone is on node B, and bob's phone rings. The
    call is carried by A: its legs, timers and lock live there. Yields alice and bob (their
    requests go to A and B), alice's app socket, bob's phone socket, alice's peer, the call."""
    alice = node_a.client()
    bob = node_b.client()
    caller = SinePeer(CALLER_HZ)
    try:
        await alice.sign_up("alice")
        await bob.sign_up("bob")
        alice_app = await alice.events("app")
        bob_phone = await bob.events("phone")
        bob_id = (await bob.ok("GET", "/v1/me"))["id"]

        async def a_sees_the_phone() -> bool:
            return "phone" in await node_a.runtime.calls.presence.devices(bob_id)

        await until(a_sees_the_phone)
        body = {"to": "bob", "sdp": await caller.offer()}
        created = await alice.ok("POST", "/v1/calls", 201, json=body)
        await caller.accept_answer(created["sdp"])
        call_id = created["call_id"]
        await bob_phone.next("call.incoming", lambda e: e["call_id"] == call_id)
        live = await node_b.runtime.calls.registry.get(call_id)
        assert live.node == node_a.runtime.nodes.node_id
        yield SimpleNamespace(
            alice=alice,
            bob=bob,
            alice_app=alice_app,
            bob_phone=bob_phone,
            caller=caller,
            call_id=call_id,
        )
    finally:
        await caller.close()
        await alice.close()
        await bob.close()


async def test_the_callee_answers_keys_and_hangs_up_through_another_node(
    tmp_path, redis_server, postgres_server
):
    """Every request bob makes lands on node B; node A carries the call and runs them:
    two-way audio, keys, hang-up and history as on one node."""
    async with (
        two_nodes(tmp_path, redis_server, postgres_server) as (node_a, node_b),
        ringing_across_nodes(node_a, node_b) as call,
    ):
        alice, bob, alice_app, bob_phone = call.alice, call.bob, call.alice_app, call.bob_phone
        path = f"/v1/calls/{call.call_id}"
        alice_b = node_b.client(alice.token)
        callee, intruder = SinePeer(CALLEE_HZ), SinePeer(440)
        try:
            # A's refusals come back through B exactly as A gives them.
            for client, suffix, body, status, code in [
                (bob, "/answer", {"sdp": "garbage"}, 400, "bad_sdp"),
                (alice_b, "/decline", None, 403, "not_allowed"),
                (bob, "/dtmf", {"digits": "1"}, 409, "call_not_answered"),
            ]:
                response = await client.request("POST", path + suffix, json=body)
                assert response.status_code == status, response.text
                assert response.json()["error"]["code"] == code

            body = {"sdp": await callee.offer(), "device_id": bob_phone.device_id}
            answered = await bob.ok("POST", path + "/answer", json=body)
            await callee.accept_answer(answered["sdp"])
            # Bob's media leg was opened by A (the answer SDP is A's), beside alice's.
            assert node_a.runtime.calls.open_legs == 2
            assert node_b.runtime.calls.open_legs == 0
            await alice_app.state(call.call_id, "answered")
            await bob_phone.state(call.call_id, "answered")
            await callee.wait_for_audio(CALLER_HZ, timeout=20)
            await call.caller.wait_for_audio(CALLEE_HZ, timeout=20)

            body = {"sdp": await intruder.offer()}
            response = await bob.request("POST", path + "/answer", json=body)
            assert response.status_code == 409, response.text
            assert response.json()["error"]["code"] == "call_not_ringing"

            await bob.ok("POST", path + "/dtmf", json={"digits": "42#"})
            dtmf = await alice_app.next("call.dtmf", lambda e: e["call_id"] == call.call_id)
            assert dtmf["digits"] == "42#" and dtmf["from"] == "bob"

            await bob.ok("POST", path + "/hangup")
            assert (await alice_app.state(call.call_id, "ended"))["reason"] == "completed"
            assert (await bob_phone.state(call.call_id, "ended"))["reason"] == "completed"
            assert node_a.runtime.calls.open_legs == 0
            response = await bob.request("POST", path + "/hangup")
            assert response.status_code == 409, response.text
            assert response.json()["error"]["code"] == "call_ended"
            # The record is final, read through either node by either party.
            for client in (alice, node_a.client(bob.token), alice_b, bob):
                history = await client.ok("GET", "/v1/calls")
                assert [(c["call_id"], c["from"], c["to"]) for c in history] == [
                    (call.call_id, "alice", "bob")
                ]
                assert (history[0]["state"], history[0]["reason"]) == ("ended", "completed")
                assert history[0]["answered_at"] and history[0]["ended_at"]
        finally:
            await callee.close()
            await intruder.close()


async def test_a_decline_through_another_node_ends_the_call_declined(
    tmp_path, redis_server, postgres_server
):
    async with (
        two_nodes(tmp_path, redis_server, postgres_server) as (node_a, node_b),
        ringing_across_nodes(node_a, node_b) as call,
    ):
        # Bob's tablet comes online on B while the call rings: A, which carries the call,
        # notes it among the ringing devices (so it is told when the call ends).
        tablet = await call.bob.events("tablet")
        await tablet.next("call.incoming", lambda e: e["call_id"] == call.call_id)

        async def tablet_rings() -> bool:
            live = await node_a.runtime.calls.registry.get(call.call_id)
            return "tablet" in live.call.ringing

        await until(tablet_rings)
        await call.bob.ok("POST", f"/v1/calls/{call.call_id}/decline")
        assert (await call.alice_app.state(call.call_id, "ended"))["reason"] == "declined"
        for device in (call.bob_phone, tablet):
            assert (await device.state(call.call_id, "ended"))["reason"] == "declined"
        assert node_a.runtime.calls.open_legs == 0
        for client in (call.bob, node_a.client(call.alice.token)):
            view = await client.ok("GET", f"/v1/calls/{call.call_id}")
            assert (view["state"], view["reason"]) == ("ended", "declined")


async def test_a_request_for_a_call_of_a_node_that_stopped_is_a_503_within_seconds(
    tmp_path, redis_server, postgres_server
):
    """Node A stops answering (frozen: its heartbeat still fresh), then is gone (its heartbeat
    key too). Bob's requests through B get 503 `node_unreachable`, never a hang; then B's
    sweeper ends the call (`failed`)."""
    async with (
        two_nodes(tmp_path, redis_server, postgres_server) as (node_a, node_b),
        ringing_across_nodes(node_a, node_b) as call,
    ):
        path = f"/v1/calls/{call.call_id}/decline"
        sweepers = node_b.runtime.nodes.sweepers
        try:
            await node_a.runtime.rpc.close()  # frozen: no answers
            started = time.monotonic()
            response = await call.bob.request("POST", path)
            took = time.monotonic() - started
            assert response.status_code == 503, response.text
            assert response.json()["error"]["code"] == "node_unreachable"
            assert took < 8, took  # the 5 s timeout

            node_b.runtime.nodes.sweepers = []  # B must not end the call before the request
            await node_a.runtime.nodes.close()  # gone: no more heartbeat
            started = time.monotonic()
            response = await call.bob.request("POST", path)
            took = time.monotonic() - started
            assert response.status_code == 503, response.text
            assert response.json()["error"]["code"] == "node_unreachable"
            assert took < 1, took  # told by the missing heartbeat: no waiting
        finally:
            node_b.runtime.nodes.sweepers = sweepers
        ended = await call.bob_phone.state(call.call_id, "ended", timeout=15)
        assert ended["reason"] == "failed"


# ------------------------------------------------ a room mixed by one node, used through both


async def test_a_room_mixed_by_one_node_is_joined_moderated_and_ended_through_the_other(
    tmp_path, redis_server, postgres_server
):
    """Alice creates a room through node A, which mixes it. Bob joins it through node B:
    B has A make his leg (the answer SDP is A's), so both are mixed on A and each hears only
    the other. Every request the moderator then makes through B (a plain-RTP gateway, mute,
    lock, kick, end) is run by A; the room's recording, a file on A, is read through B."""
    alice_hz, bob_hz, gateway_hz = 600.0, 1000.0, 1400.0
    async with two_nodes(tmp_path, redis_server, postgres_server) as (node_a, node_b):
        alice = await node_a.client().sign_up("alice")
        bob = await node_b.client().sign_up("bob")
        alice_b = node_b.client(alice.token)  # the moderator's requests through B
        alice_app, bob_app = await alice.events(), await bob.events()
        room = await alice.ok("POST", "/v1/rooms", 201, json={"name": "ops", "record": True})
        room_id, path = room["room_id"], f"/v1/rooms/{room['room_id']}"
        rooms_a, rooms_b = node_a.runtime.rooms, node_b.runtime.rooms
        alice_peer, bob_peer = SinePeer(alice_hz, level=0.25), SinePeer(bob_hz, level=0.25)
        gateway = RtpPeer("pcmu", gateway_hz, 0.25)
        try:
            bob_pid = await join(bob, room_id, bob_peer)  # through B
            alice_pid = await join(alice, room_id, alice_peer)  # through A
            assert (rooms_a.open_legs, rooms_b.open_legs) == (2, 0)
            assert not rooms_b.media.is_open(room_id)
            for peer in (alice_peer, bob_peer):
                await peer.wait_connected()
            mark = await _wait_mix([alice_peer, bob_peer], [alice_hz, bob_hz])
            for peer, own, other in [(alice_peer, alice_hz, bob_hz), (bob_peer, bob_hz, alice_hz)]:
                pcm = heard(peer, mark)
                assert tone_db(pcm, other) > 40, (own, tone_db(pcm, other))
                assert tone_db(pcm, own) < tone_db(pcm, other) - 20, (own, tone_db(pcm, own))
            view = await bob.ok("GET", path)  # read where it lands, from the bus
            assert {p["participant_id"] for p in view["participants"]} == {alice_pid, bob_pid}

            # A's refusals come back through B as A gives them.
            for method, suffix, body, status, code in [
                ("POST", "/lock", None, 403, "not_moderator"),
                ("PATCH", f"/participants/{alice_pid}", {"muted": True}, 403, "not_moderator"),
                (
                    "POST",
                    "/rtp",
                    {"host": "127.0.0.1", "port": 9, "codec": "pcmu"},
                    403,
                    "not_moderator",
                ),
            ]:
                response = await bob.request(method, path + suffix, json=body)
                assert response.status_code == status, response.text
                assert response.json()["error"]["code"] == code

            # The moderator, through B: a plain-RTP gateway (its port is A's), then mutes bob.
            joined = await alice_b.ok(
                "POST",
                path + "/rtp",
                201,
                json={"host": gateway.host, "port": gateway.port, "codec": "pcmu"},
            )
            assert rooms_a.open_legs == 3 and rooms_b.open_legs == 0
            gateway.start(joined["server_host"], joined["server_port"])
            muted = await alice_b.ok(
                "PATCH", f"{path}/participants/{bob_pid}", json={"muted": True}
            )
            assert muted["muted"] and muted["muted_by_moderator"]
            await bob_app.next("room.participant_muted", lambda e: e["participant_id"] == bob_pid)
            await asyncio.sleep(0.5)
            mark = time.monotonic()
            await alice_peer.wait_heard(1.0, since_s=mark)
            pcm = heard(alice_peer, mark)
            assert tone_db(pcm, gateway_hz) > 40
            assert tone_db(pcm, bob_hz) < tone_db(pcm, gateway_hz) - 30

            locked = await alice_b.ok("POST", path + "/lock")
            assert locked["locked"] and (await alice.ok("GET", path))["locked"]
            await alice_b.ok("POST", path + "/unlock")

            kicked = await alice_b.ok("DELETE", f"{path}/participants/{joined['participant_id']}")
            assert kicked["reason"] == "kicked"
            assert rooms_a.open_legs == 2

            await alice_b.ok("DELETE", path)
            for app in (alice_app, bob_app):
                ended = await app.next("room.ended", lambda e: e["room_id"] == room_id)
                assert ended["reason"] == "ended"
            assert rooms_a.open_legs == 0 and not rooms_a.media.is_open(room_id)
        finally:
            for closing in (alice_peer, bob_peer, gateway):
                await closing.close()
            await alice.close()
            await bob.close()

        # The recording is a file on A: B lists it and streams it from A.
        listed = await alice_b.ok("GET", path + "/recordings")
        assert [r["recording_id"] for r in listed] == [
            r["recording_id"] for r in await alice.ok("GET", path + "/recordings")
        ]
        assert len(listed) == 1 and listed[0]["ended_at"] and listed[0]["bytes"] > 1000
        through_b = await alice_b.request("GET", listed[0]["url"])
        assert through_b.status_code == 200, through_b.text
        assert through_b.headers["content-type"] == "audio/ogg"
        on_a = await alice.request("GET", path + "/recording")
        assert through_b.content == on_a.content and through_b.content[:4] == b"OggS"
        assert len(through_b.content) == listed[0]["bytes"]
        response = await bob.request("GET", listed[0]["url"])
        assert response.status_code == 404, response.text


async def test_a_room_request_for_a_mixing_node_that_is_gone_is_a_503_then_another_takes_it(
    tmp_path, redis_server, postgres_server
):
    async with two_nodes(tmp_path, redis_server, postgres_server) as (node_a, node_b):
        alice = await node_a.client().sign_up("alice")
        room_id = (await alice.ok("POST", "/v1/rooms", 201, json={}))["room_id"]
        alice_b = node_b.client(alice.token)
        sweepers = node_b.runtime.nodes.sweepers
        try:
            node_b.runtime.nodes.sweepers = []  # B must not take the room before the request
            await node_a.runtime.rpc.close()
            await node_a.runtime.nodes.close()  # gone: no more heartbeat
            started = time.monotonic()
            response = await alice_b.request("POST", f"/v1/rooms/{room_id}/lock")
            took = time.monotonic() - started
            assert response.status_code == 503, response.text
            assert response.json()["error"]["code"] == "node_unreachable"
            assert took < 1, took  # told by the missing heartbeat: no waiting
        finally:
            node_b.runtime.nodes.sweepers = sweepers

        async def taken_over() -> bool:
            view = await node_b.runtime.rooms.get(Actor(admin=True), room_id)
            return view.room.node == node_b.runtime.nodes.node_id

        await until(taken_over, timeout=15)
        assert (await alice_b.ok("POST", f"/v1/rooms/{room_id}/lock"))["locked"]


# ------------------------------------------ a hotline caller on one node, an agent on another


async def test_an_agent_on_another_node_takes_a_hotline_caller_waiting_on_this_one(
    tmp_path, redis_server, postgres_server
):
    """Alice calls the hotline through node A (her call, its menu and its place in the queue
    live on A) and asks for an operator while none is available. Carol, an operator whose
    app and requests go to node B, becomes available there: A offers her the caller, she
    answers, talks, chooses `away` for after the call and hangs up, all through B. Then A
    dies while she talks to a second caller: B ends that call, frees her, closes its record."""
    async with two_nodes(tmp_path, redis_server, postgres_server) as (node_a, node_b):
        await tone_menu(node_a)
        queue = {"wrap_up_s": 0}
        await node_a.client().ok("PUT", "/v1/queues/desk", json=queue, token=ADMIN_KEY)
        carol = await node_b.client().sign_up("carol")
        await carol.ok("POST", "/v1/queues/desk/agents", 201)  # away until she says otherwise
        carol_app = await carol.events()
        alice = await node_a.client().sign_up("alice")
        caller, operator = SinePeer(CALLER_HZ), SinePeer(CALLEE_HZ)
        caller2, operator2 = SinePeer(CALLER_HZ), SinePeer(CALLEE_HZ)
        try:
            created = await place(alice, "hotline:5000", caller)
            call_id = created["call_id"]
            await caller.wait_for_audio(MAIN_HZ, timeout=20)
            await alice.ok("POST", f"/v1/calls/{call_id}/dtmf", json={"digits": "0"})

            async def waiting() -> bool:
                return bool(await node_a.runtime.hotline.agents.waiting("desk"))

            await until(waiting)
            await carol.ok("PUT", "/v1/agents/me", json={"state": "available"})
            offer = await carol_app.next("call.incoming", lambda e: e["call_id"] == call_id)
            assert offer["context"]["queue"] == "desk"
            await answer(carol, call_id, operator, device=carol_app.device_id)
            assert node_a.runtime.calls.open_legs == 2 and node_b.runtime.calls.open_legs == 0
            await caller.wait_for_audio(CALLEE_HZ, timeout=20)
            await operator.wait_for_audio(CALLER_HZ, timeout=20)
            for node in (node_a, node_b):
                queue = await node.client(carol.token).ok("GET", "/v1/queues/desk")
                assert {a["username"]: a["state"] for a in queue["agents"]} == {"carol": "on_call"}

            # Away for after this call, chosen through B: A, where the call ends, honours it.
            await carol.ok("PUT", "/v1/agents/me", json={"state": "away"})
            for node in (node_a, node_b):
                me = await node.client(carol.token).ok("GET", "/v1/agents/me")
                assert (me["state"], me["after_call"]) == ("on_call", "away")
            before = len(carol_app.seen)
            await carol.ok("POST", f"/v1/calls/{call_id}/hangup")
            await carol_app.state(call_id, "ended")
            await carol_app.next(
                "agent.state",
                lambda e: e["state"] == "away" and any(e is n for n in carol_app.seen[before:]),
            )
            assert (await carol.ok("GET", "/v1/agents/me"))["after_call"] is None

            await carol.ok("PUT", "/v1/agents/me", json={"state": "available"})
            second = (await place(alice, "hotline:5000", caller2))["call_id"]
            await caller2.wait_for_audio(MAIN_HZ, timeout=20)
            await alice.ok("POST", f"/v1/calls/{second}/dtmf", json={"digits": "0"})
            await carol_app.next("call.incoming", lambda e: e["call_id"] == second)
            await answer(carol, second, operator2, device=carol_app.device_id)
            assert (await carol.ok("GET", "/v1/agents/me"))["state"] == "on_call"
            before = len(carol_app.seen)
            await node_a.runtime.rpc.close()
            await node_a.runtime.nodes.close()  # A is gone: B's sweep ends its calls
            assert (await carol_app.state(second, "ended", timeout=20))["reason"] == "failed"
            await carol_app.next(
                "agent.state",
                lambda e: (
                    e["state"] == "available" and any(e is n for n in carol_app.seen[before:])
                ),
            )
        finally:
            for peer in (caller, operator, caller2, operator2):
                await peer.close()
            await carol.close()
        records = await node_b.client().ok("GET", "/v1/hotlines/5000/calls", token=ADMIN_KEY)
        carol_id = (await carol.ok("GET", "/v1/me"))["id"]
        outcomes = {r["call_id"]: (r["outcome"], r["queue"], r["operator_id"]) for r in records}
        assert outcomes == {
            call_id: ("operator", "desk", carol_id),
            second: ("operator", "desk", carol_id),
        }
        assert all(r["ended_at"] for r in records)


async def test_a_trunk_stored_through_one_node_is_used_by_the_others(
    tmp_path, redis_server, postgres_server
):
    async with two_nodes(tmp_path, redis_server, postgres_server, sip=True) as (node_a, node_b):
        admin = node_a.client(ADMIN_KEY)
        body = {"proxy": "127.0.0.1:5099", "prefixes": ["+86"], "inbound_to": "bob"}
        await admin.ok("PUT", "/v1/sip/trunks/carrier", json=body)

        async def b_has_it() -> bool:
            trunk = node_b.runtime.sip.trunks.get("carrier")
            return trunk is not None and trunk.prefixes == ("+86",)

        await until(b_has_it, timeout=10)
        assert node_b.runtime.sip.dials("tel:+8613800138000")
        await admin.ok("DELETE", "/v1/sip/trunks/carrier")
        await until(lambda: _gone(node_b), timeout=10)
        assert not node_b.runtime.sip.dials("tel:+8613800138000")


async def _gone(node) -> bool:
    return "carrier" not in node.runtime.sip.trunks


async def test_a_call_and_a_room_go_on_through_a_redis_restart_that_lost_every_key(
    tmp_path, fresh_redis, postgres_server
):
    """Redis restarts without persistence mid-call: the media never stopped (it does not go
    through Redis), and the node carrying the call and mixing the room writes them back, so
    the parties hang up and the moderator ends the room as if nothing had happened."""
    shared = {
        "redis_url": fresh_redis.url,
        "database_url": postgres_server.url(postgres_server.create_database()),
        "sample_hotlines": False,
    }
    async with (
        running(tmp_path / "a", **shared) as node_a,
        running(tmp_path / "b", **shared) as node_b,
        ringing_across_nodes(node_a, node_b) as call,
    ):
        path = f"/v1/calls/{call.call_id}"
        callee = SinePeer(CALLEE_HZ)
        try:
            body = {"sdp": await callee.offer(), "device_id": call.bob_phone.device_id}
            answered = await call.bob.ok("POST", path + "/answer", json=body)
            await callee.accept_answer(answered["sdp"])
            await callee.wait_for_audio(CALLER_HZ, timeout=20)
            await call.caller.wait_for_audio(CALLEE_HZ, timeout=20)
            room_id = (await call.alice.ok("POST", "/v1/rooms", 201, json={}))["room_id"]

            fresh_redis.kill()
            fresh_redis.start()  # same port, every key lost

            async def written_back() -> bool:
                response = await call.bob.request("GET", path)  # through B
                rooms = await call.alice.request("GET", f"/v1/rooms/{room_id}")
                return (
                    response.status_code == 200
                    and response.json()["state"] == "answered"
                    and rooms.status_code == 200
                )

            await until(written_back, timeout=30, every=0.2)
            assert node_a.runtime.nodes.resyncs >= 1
            mark = time.monotonic()  # the call's media went on all along
            await callee.wait_heard(1.0, since_s=mark, timeout=20)
            assert callee.hears(CALLER_HZ)
            await call.bob.ok("POST", path + "/hangup")  # through B, run by A

            async def ended() -> bool:
                view = await call.alice.ok("GET", path)
                return view["state"] == "ended"

            await until(ended, timeout=10, every=0.1)
            view = await call.alice.ok("GET", path)
            assert view["reason"] == "completed"
            assert node_a.runtime.calls.open_legs == 0
            await call.alice.ok("DELETE", f"/v1/rooms/{room_id}")
        finally:
            await callee.close()


async def test_a_sip_caller_for_a_room_mixed_by_another_node_is_sent_there(
    tmp_path, redis_server, postgres_server
):
    """A phone dials the room at node B; A mixes it: B redirects the call (302) to A's SIP
    address, the phone follows, and it is in the room, heard by the others."""
    async with two_nodes(tmp_path, redis_server, postgres_server, sip=True) as (node_a, node_b):
        owner = node_a.client()
        await owner.sign_up("owner")
        events = await owner.events()
        room_id = (await owner.ok("POST", "/v1/rooms", 201, json={"name": "ops"}))["room_id"]
        peer = SinePeer(880)
        phone = Baresip(tmp_path / "baresip", freq=500, seconds=30)
        try:
            await join(owner, room_id, peer)
            await peer.wait_connected()
            await phone.dial(f"sip:room-{room_id}@127.0.0.1:{node_b.settings.sip_port}")
            joined = await events.next(
                "room.participant_joined", lambda e: e.get("kind") == "sip", timeout=30
            )
            await peer.wait_for_audio(500, timeout=15)  # the phone's tone, mixed by A
            view = await node_b.client(owner.token).ok("GET", f"/v1/rooms/{room_id}")
            assert joined["participant_id"] in {p["participant_id"] for p in view["participants"]}
            # The phone's leg is A's: B only redirected it.
            assert node_a.runtime.rooms.open_legs == 2 and node_b.runtime.rooms.open_legs == 0
        finally:
            await peer.close()
            await phone.stop()
            await owner.close()
