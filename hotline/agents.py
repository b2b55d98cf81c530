"""Operator queues at run time: agents and their state (in the store, so it survives a
restart), callers waiting (in the bus), and the dispatcher that offers the next caller to
the agent the queue's strategy picks."""

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
from voice.errors import BadRequest, NotFound
from voice.store import Store, UserInfo, as_utc

log = logging.getLogger("chorus.hotline")


class AgentDesk:
    def __init__(self, store: Store, bus: Bus, clock: Callable[[], float] = time.time):
        self.store = store
        self.bus = bus
        self.clock = clock
        self.calls: Any = None
        self.hotline: Any = None
        self._locks: dict[str, asyncio.Lock] = {}
        self._last_offered: dict[str, str] = {}
        self._ringing: set[str] = set()  # agents whose devices ring for some caller now
        self._wrap_ups: dict[str, asyncio.TimerHandle] = {}
        self._after_call: dict[str, AgentState] = {}  # "away" chosen during a call

    def attach(self, calls: Any, hotline: Any) -> None:
        self.calls, self.hotline = calls, hotline

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
            # Busy now: the choice applies when the call and its wrap-up are over.
            self._after_call[user.id] = AgentState.AWAY
            await self._announce_state(user.id)
            return queues
        self._after_call.pop(user.id, None)
        if current is AgentState.ON_CALL:
            return queues  # available again is what happens after the call anyway
        await self._set(user.id, AgentState(state))
        for queue in queues:
            await self.dispatch(queue)
        return queues

    def after_call(self, user_id: str) -> AgentState | None:
        return self._after_call.get(user_id)

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
        await self.bus.put(
            f"hotline-waiting:{{{call_id}}}", {"queue": queue, "since": self.clock()}
        )
        await self.bus.add_member(f"hotline-queue:{{{queue}}}", call_id)

    async def leave_waiting(self, queue: str, call_id: str) -> None:
        await self.bus.remove_member(f"hotline-queue:{{{queue}}}", call_id)
        await self.bus.delete(f"hotline-waiting:{{{call_id}}}")

    async def waiting(self, queue: str) -> list[tuple[str, float]]:
        found = []
        for call_id in await self.bus.members(f"hotline-queue:{{{queue}}}"):
            entry = await self.bus.get(f"hotline-waiting:{{{call_id}}}")
            if entry is not None:
                found.append((call_id, float(entry["since"])))
        return sorted(found, key=lambda item: (item[1], item[0]))

    async def position(self, queue: str, call_id: str) -> int:
        ids = [c for c, _ in await self.waiting(queue)]
        return ids.index(call_id) + 1 if call_id in ids else 0

    # -------------------------------------------------------------------- dispatching

    async def dispatch(self, queue: str) -> None:
        """Offers waiting callers, oldest first, to the agents the strategy picks."""
        async with self._locks.setdefault(queue, asyncio.Lock()):
            settings = await self.settings(queue)
            agents = await self.agents(queue)
            for call_id, _ in await self.waiting(queue):
                if self.hotline.is_offering(call_id):
                    continue
                skip = self.hotline.waiting_skip(call_id) | frozenset(self._ringing)
                chosen = pick(
                    settings, agents, last_offered=self._last_offered.get(queue), skip=skip
                )
                if not chosen:
                    return
                rung = await self.hotline.offer_next(queue, call_id, chosen, settings.agent_ring_s)
                if rung:
                    self._last_offered[queue] = rung[-1]
                    self._ringing.update(rung)
                    agents = [a for a in agents if a.user_id not in rung]

    async def offer_failed(self, agent_ids: list[str], reason: str, queue: str | None) -> None:
        self._ringing.difference_update(agent_ids)
        if reason == "no_answer":  # not there: set away so the next caller is not offered
            for agent in agent_ids:
                if len(agent_ids) == 1:
                    await self._set(agent, AgentState.AWAY)

    async def started_call(self, agent_id: str, rung: list[str]) -> None:
        """`agent_id` took the call; the others rung with it (ring-all) are free again."""
        self._ringing.difference_update([agent_id, *rung])
        await self._set(agent_id, AgentState.ON_CALL)

    async def ended_call(self, agent_id: str) -> None:
        if self._after_call.pop(agent_id, None) is AgentState.AWAY:
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
        after = self._after_call.pop(agent_id, AgentState.AVAILABLE)
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
