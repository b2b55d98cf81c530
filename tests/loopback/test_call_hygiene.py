"""After calls end, nothing is left behind: peer connections, tasks, threads, sockets, files."""

from __future__ import annotations

import asyncio
import os
import threading

from tests.loopback.test_calls import CALLEE_HZ, CALLER_HZ, answer, peers, place, users


def _server_task(task: asyncio.Task) -> bool:
    # The test's own client peers (the ICE-controlling side) sometimes leave aioice's consent
    # task running after close (it then idles with nothing to check); that is the client in
    # this process, not the server, so it is not counted.
    coro = task.get_coro()
    if getattr(coro, "__qualname__", "") == "Connection.query_consent":
        return not coro.cr_frame.f_locals["self"].ice_controlling
    return True


def counts() -> dict[str, int]:
    return {
        "threads": threading.active_count(),
        "tasks": sum(1 for t in asyncio.all_tasks() if _server_task(t)),
        "fds": len(os.listdir("/proc/self/fd")),
    }


async def settle(
    baseline: dict[str, int], slack: dict[str, int], timeout: float = 30
) -> dict[str, int]:
    """Polls until every count is back within slack of the baseline (or the time is up)."""
    async with asyncio.timeout(timeout):
        while True:
            now = counts()
            if all(now[k] <= baseline[k] + slack[k] for k in baseline):
                return now
            await asyncio.sleep(0.1)


async def test_twenty_calls_leave_nothing_behind(service):
    alice, bob = await users(service, "alice", "bob")
    bob_phone = await bob.events()
    # one call first, so lazily created pools (executor threads, DB connections) exist already
    async with peers(CALLER_HZ, CALLEE_HZ) as (caller, callee):
        call_id = (await place(alice, "bob", caller))["call_id"]
        await bob_phone.next("call.incoming", lambda e: e["call_id"] == call_id)
        await bob.ok("POST", f"/v1/calls/{call_id}/decline")
    await asyncio.sleep(0.5)
    baseline = counts()

    for i in range(20):
        async with peers(CALLER_HZ, CALLEE_HZ) as (caller, callee):
            call_id = (await place(alice, "bob", caller))["call_id"]
            await bob_phone.next("call.incoming", lambda e, c=call_id: e["call_id"] == c)
            if i % 2:
                await answer(bob, call_id, callee, device=bob_phone.device_id)
                await caller.wait_for_audio(CALLEE_HZ, timeout=20)
                await (alice if i % 4 == 1 else bob).ok("POST", f"/v1/calls/{call_id}/hangup")
            else:
                await alice.ok("POST", f"/v1/calls/{call_id}/hangup")
            await bob_phone.state(call_id, "ended")

    assert service.runtime.calls.open_legs == 0
    assert service.runtime.metrics.peer_connections._value.get() == 0
    final = await settle(baseline, {"threads": 2, "tasks": 2, "fds": 4})
    assert final["threads"] <= baseline["threads"] + 2, (baseline, final)
    history = await alice.ok("GET", "/v1/calls?limit=100")
    assert len(history) == 21 and all(c["state"] == "ended" for c in history)
