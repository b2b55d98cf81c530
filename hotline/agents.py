"""Operator queues at run time: agents and their state (in the store, so it survives a
restart), callers waiting (in the bus), and the dispatcher that offers the next caller to
the agent the queue's strategy picks.

With several nodes, a waiting caller's menu session and call live on the node that placed
the call, so only that node can offer it to an agent; an agent may be connected to, and
become free on, any node. So what agents do is shared (their state in the store; who is
being rung for a caller, and the state chosen for after the call, in the bus) and a node
where an agent becomes free asks every node with callers waiting in that queue to dispatch
them, the node of the longest-waiting caller first (`voice.rpc`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select

from hotline.models import Agent, QueueConfig
from hotline.queues import AgentState, AgentView, QueueSettings, parse_settings, pick
from voice.bus import Bus
from voice.errors import BadRequest, ChorusError, NotFound
from voice.rpc import NodeRpc
from voice.store import Store, UserInfo, as_utc

log = logging.getLogger("chorus.hotline")

RINGING_GRACE_S = 10.0  # a claim on an agent outlives its offer by this (a node died mid-offer)
AFTER_CALL_TTL_S = 12 * 3600.0  # "away after this call", forgotten if the call never ends here


def _ringing_key(agent_id: str) -> str:
    """Held while the agent's devices ring for some caller: no other caller is offered."""
    return f"hotline-ringing:{{{agent_id}}}"


def _after_call_key(agent_id: str) -> str:
    return f"hotline-after-call:{{{agent_id}}}"


class AgentDesk:
    def __init__(self, store: Store, bus: Bus, clock: Callable[[], float] = time.time):
        self.store = store
        self.bus = bus
        self.clock = clock
        self.calls: Any = None
        self.hotline: Any = None
        self._locks: dict[str, asyncio.Lock] = {}
        self._last_offered: dict[str, str] = {}
        self._wrap_ups: dict[str, asyncio.TimerHandle] = {}
        self.rpc: NodeRpc | None = None  # the other nodes (set by `serve_nodes`)
        self.node: str | None = None

    def attach(self, calls: Any, hotline: Any) -> None:
        self.calls, self.hotline = calls, hotline

    def serve_nodes(self, rpc: NodeRpc) -> None:
        """Asks the other nodes to dispatch their waiting callers, and dispatches ours when
        they ask."""
        self.rpc, self.node = rpc, rpc.node_id

        async def dispatch_here(args: dict[str, Any]) -> None:
            await self._dispatch_here(str(args["queue"]))

        rpc.handle("hotline.dispatch", dispatch_here)

    async def recover(self) -> None:
        """After a restart no call is in progress: nobody is on a call or wrapping up."""
        async with self.store.session() as session:
            for row in await session.scalars(
                select(Agent).where(Agent.state.in_([AgentState.ON_CALL, AgentState.WRAP_UP]))
            ):
                row.state, row.state_since = AgentState.AVAILABLE, _now()

    # ---------------------------------------------------------------------- settings

    async def settings(self, queue: str) -> QueueSettings:
        async with self.store.session() as session:
            row = await session.get(QueueConfig, queue)
        return parse_settings(json.loads(row.document)) if row else QueueSettings()

    async def configure(self, queue: str, document: Any) -> QueueSettings:
        _check_name(queue)
        settings = parse_settings(document)
        async with self.store.session() as session:
            row = await session.get(QueueConfig, queue)
            text = json.dumps(settings.document())
            if row is None:
                session.add(QueueConfig(name=queue, document=text))
            else:
                row.document = text
        return settings

    # ------------------------------------------------------------------------ agents

    async def join(self, queue: str, user: UserInfo) -> AgentState:
        """Become an agent of `queue`; an agent keeps the state it has in its other queues
        (a new agent starts `away` until it says it is available)."""
        _check_name(queue)
        current, _ = await self.status(user.id)
        state = current or AgentState.AWAY
        async with self.store.session() as session:
            if await session.get(Agent, (queue, user.id)) is None:
                now = _now()
                session.add(
                    Agent(
                        queue=queue,
                        user_id=user.id,
                        state=state,
                        state_since=now,
                        idle_since=now,
                        calls_taken=0,
                    )
                )
        await self._announce_state(user.id)
        if state is AgentState.AVAILABLE:
            await self.dispatch(queue)
        return state

    async def leave(self, queue: str, user: UserInfo) -> None:
        async with self.store.session() as session:
            row = await session.get(Agent, (queue, user.id))
            if row is None:
                raise NotFound("you are not an agent of that queue", code="not_an_agent")
            await session.delete(row)

    async def set_state(self, user: UserInfo, state: str) -> list[str]:
        """The agent's own choice: `available` or `away` (in every queue they belong to)."""
        if state not in (AgentState.AVAILABLE, AgentState.AWAY):
            raise BadRequest("agents set themselves 'available' or 'away'", code="bad_state")
        current, queues = await self.status(user.id)
        if not queues:
            raise NotFound("join a queue first", code="not_an_agent")
        if current in (AgentState.ON_CALL, AgentState.WRAP_UP) and state == AgentState.AWAY:
            # Busy now: the choice applies when the call and its wrap-up are over (on the
            # node carrying the call, which may not be this one: kept in the bus).
            choice = {"state": AgentState.AWAY.value}
            await self.bus.put(_after_call_key(user.id), choice, ttl_s=AFTER_CALL_TTL_S)
            await self._announce_state(user.id)
            return queues
        await self._pop_after_call(user.id)
        if current is AgentState.ON_CALL:
            return queues  # available again is what happens after the call anyway
        await self._set(user.id, AgentState(state))
        for queue in queues:
            await self.dispatch(queue)
        return queues

    async def after_call(self, user_id: str) -> AgentState | None:
        found = await self.bus.get(_after_call_key(user_id))
        return AgentState(found["state"]) if found else None

    async def _pop_after_call(self, user_id: str) -> AgentState | None:
        found = await self.after_call(user_id)
        if found is not None:
            await self.bus.delete(_after_call_key(user_id))
        return found

    async def status(self, user_id: str) -> tuple[AgentState | None, list[str]]:
        """The agent's state (the same in every queue) and queues; (None, []) for non-agents."""
        async with self.store.session() as session:
            rows = list(await session.scalars(select(Agent).where(Agent.user_id == user_id)))
        if not rows:
            return None, []
        return AgentState(rows[0].state), sorted(r.queue for r in rows)

    async def agents(self, queue: str) -> list[AgentView]:
        async with self.store.session() as session:
            rows = list(await session.scalars(select(Agent).where(Agent.queue == queue)))
        views = []
        for row in rows:
            user = await self.store.user_by_id(row.user_id)
            views.append(
                AgentView(
                    row.user_id,
                    user.username if user else "?",
                    AgentState(row.state),
                    as_utc(row.idle_since).timestamp(),
                )
            )
        return views

    async def _set(self, user_id: str, state: AgentState) -> list[str]:
        async with self.store.session() as session:
            rows = list(await session.scalars(select(Agent).where(Agent.user_id == user_id)))
            now = _now()
            for row in rows:
                if row.state != state:
                    row.state, row.state_since = state, now
                    if state is AgentState.AVAILABLE:
                        row.idle_since = now
                if state is AgentState.ON_CALL:
                    row.calls_taken += 1
            queues = [r.queue for r in rows]
        await self._announce_state(user_id)
        return queues

    async def _announce_state(self, user_id: str) -> None:
        async with self.store.session() as session:
            rows = list(await session.scalars(select(Agent).where(Agent.user_id == user_id)))
        if rows:
            await self.bus.publish(
                f"user:{user_id}",
                {
                    "type": "agent.state",
                    "state": rows[0].state,
                    "queues": sorted(r.queue for r in rows),
                },
            )

    # ----------------------------------------------------------------------- waiting

    async def join_waiting(self, queue: str, call_id: str, context: dict[str, Any]) -> None:
        entry = {"queue": queue, "since": self.clock(), "node": self.node}
        await self.bus.put(f"hotline-waiting:{{{call_id}}}", entry)
        await self.bus.add_member(f"hotline-queue:{{{queue}}}", call_id)

    async def leave_waiting(self, queue: str, call_id: str) -> None:
        await self.bus.remove_member(f"hotline-queue:{{{queue}}}", call_id)
        await self.bus.delete(f"hotline-waiting:{{{call_id}}}")

    async def waiting(self, queue: str) -> list[tuple[str, float]]:
        return [(call_id, since) for call_id, since, _ in await self._waiting(queue)]

    async def _waiting(self, queue: str) -> list[tuple[str, float, str | None]]:
        """Callers waiting in `queue`, oldest first: (call id, since, node whose call it is)."""
        found = []
        for call_id in await self.bus.members(f"hotline-queue:{{{queue}}}"):
            entry = await self.bus.get(f"hotline-waiting:{{{call_id}}}")
            if entry is not None:
                found.append((call_id, float(entry["since"]), entry.get("node")))
        return sorted(found, key=lambda item: (item[1], item[0]))

    def _here(self, node: str | None) -> bool:
        return self.rpc is None or node in (None, self.node)

    async def position(self, queue: str, call_id: str) -> int:
        ids = [c for c, _ in await self.waiting(queue)]
        return ids.index(call_id) + 1 if call_id in ids else 0

    # -------------------------------------------------------------------- dispatching

    async def dispatch(self, queue: str) -> None:
        """Offers waiting callers, oldest first, to the agents the strategy picks: ours
        here, other nodes' by asking those nodes (the one with the oldest caller first)."""
        nodes: list[str | None] = []
        for _, _, node in await self._waiting(queue):
            where = None if self._here(node) else node
            if where not in nodes:
                nodes.append(where)
        for node in nodes:
            if node is None:
                await self._dispatch_here(queue)
                continue
            assert self.rpc is not None
            try:
                await self.rpc.call(node, "hotline.dispatch", {"queue": queue})
            except ChorusError as exc:  # its callers wait for the next chance (or its sweep)
                log.warning("queue=%s: node %s did not dispatch: %s", queue, node, exc.message)

    async def _dispatch_here(self, queue: str) -> None:
        """Offers the callers waiting on this node."""
        async with self._locks.setdefault(queue, asyncio.Lock()):
            settings = await self.settings(queue)
            agents = await self.agents(queue)
            for call_id, _, node in await self._waiting(queue):
                if not self._here(node) or self.hotline.is_offering(call_id):
                    continue
                chosen = await self._claim(
                    settings, agents, self.hotline.waiting_skip(call_id), queue
                )
                if not chosen:
                    return
                rung: list[str] = []
                try:
                    rung = await self.hotline.offer_next(
                        queue, call_id, chosen, settings.agent_ring_s
                    )
                finally:  # those not rung (no device connected) are free for others
                    await self._release([a for a in chosen if a not in rung])
                if rung:
                    self._last_offered[queue] = rung[-1]
                agents = [a for a in agents if a.user_id not in chosen]

    async def _claim(
        self, settings: QueueSettings, agents: list[AgentView], skip: frozenset[str], queue: str
    ) -> list[str]:
        """The agents the strategy picks, each claimed in the bus so that no other caller
        (on this node or another) rings them at the same time; empty: nobody is free."""
        while True:
            chosen = pick(settings, agents, last_offered=self._last_offered.get(queue), skip=skip)
            if not chosen:
                return []
            claim = {"by": self.node}
            ttl = settings.agent_ring_s + RINGING_GRACE_S
            claimed = [
                agent
                for agent in chosen
                if await self.bus.put_if_absent(_ringing_key(agent), claim, ttl_s=ttl)
            ]
            if claimed:
                return claimed
            skip = skip | frozenset(chosen)  # rung for another caller: pick among the others

    async def _release(self, agent_ids: list[str]) -> None:
        for agent in agent_ids:
            await self.bus.delete(_ringing_key(agent))

    async def offer_failed(self, agent_ids: list[str], reason: str, queue: str | None) -> None:
        await self._release(agent_ids)
        if reason == "no_answer":  # not there: set away so the next caller is not offered
            for agent in agent_ids:
                if len(agent_ids) == 1:
                    await self._set(agent, AgentState.AWAY)

    async def started_call(self, agent_id: str, rung: list[str]) -> None:
        """`agent_id` took the call; the others rung with it (ring-all) are free again."""
        await self._release(sorted({agent_id, *rung}))
        await self._set(agent_id, AgentState.ON_CALL)

    async def ended_call(self, agent_id: str) -> None:
        if await self._pop_after_call(agent_id) is AgentState.AWAY:
            await self._set(agent_id, AgentState.AWAY)
            return
        queues = await self._set(agent_id, AgentState.WRAP_UP)
        wrap = max([(await self.settings(q)).wrap_up_s for q in queues] or [0.0])

        def done() -> None:
            self._wrap_ups.pop(agent_id, None)
            asyncio.get_running_loop().create_task(self._wrapped_up(agent_id))

        old = self._wrap_ups.pop(agent_id, None)
        if old is not None:
            old.cancel()
        self._wrap_ups[agent_id] = asyncio.get_running_loop().call_later(wrap, done)

    async def _wrapped_up(self, agent_id: str) -> None:
        async with self.store.session() as session:
            rows = list(await session.scalars(select(Agent).where(Agent.user_id == agent_id)))
            still = any(r.state == AgentState.WRAP_UP for r in rows)
        after = await self._pop_after_call(agent_id) or AgentState.AVAILABLE
        if still:
            for queue in await self._set(agent_id, after):
                await self.dispatch(queue)

    def shutdown(self) -> None:
        for handle in self._wrap_ups.values():
            handle.cancel()
        self._wrap_ups.clear()


def _check_name(queue: str) -> None:
    if not queue or len(queue) > 64 or not all(c.isalnum() or c in "-_." for c in queue):
        raise BadRequest(
            "queue names are 1-64 letters, digits, '-', '_' or '.'", code="bad_queue", status=422
        )


def _now() -> datetime:
    return datetime.now(UTC)
