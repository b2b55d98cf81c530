"""The hotline service: published menus, the callers going through them, and the operator
queues they reach. It answers calls to `hotline:<number>` for the call controller (the
`ServiceDesk` port) and drives what each caller hears on its leg."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from hotline import menu as m
from hotline.agents import AgentDesk
from hotline.models import HotlineCall, MenuVersion
from hotline.music import melody
from hotline.providers import DataProvider, HttpJsonProvider, Provider, ProviderError
from hotline.tts import Speaker
from voice.bus import Bus
from voice.errors import BadRequest, ChorusError, Conflict, NotFound
from voice.media.dtmf import InbandDtmf
from voice.media.opus import OpusClip, encode_loop
from voice.ports import ToneClips
from voice.store import Store, as_utc

log = logging.getLogger("chorus.hotline")
PREFIX = "hotline:"
LOOKUP_TIMEOUT_S = 5.0
TRANSFER_RING_S = 20.0


class CallSession:
    """One caller in a menu: the pure session plus this process's timers and leg."""

    def __init__(self, call_id: str, number: str, menu: m.Menu, version: int, leg: Any):
        self.call_id = call_id
        self.number = number
        self.menu = menu
        self.version = version
        self.leg = leg
        self.state = m.Session()
        self.timers: dict[str, asyncio.TimerHandle] = {}
        self.path: list[str] = []
        self.queue: str | None = None
        self.queued_at: float | None = None
        self.wait_s: float | None = None
        self.operator: str | None = None
        self.outcome = "in_progress"
        self.declined_by: set[str] = set()
        self.offering: list[str] = []
        self.overflow: m.Action | None = None

    def cancel(self, *names: str) -> None:
        for name in names or list(self.timers):
            handle = self.timers.pop(name, None)
            if handle is not None:
                handle.cancel()


class HotlineService:
    def __init__(
        self,
        *,
        store: Store,
        bus: Bus,
        speaker: Speaker,
        tones: ToneClips,
        agents: AgentDesk,
        bitrate: int,
        inband_dtmf: bool = True,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], datetime] = lambda: datetime.now(UTC),
    ):
        self.store = store
        self.bus = bus
        self.speaker = speaker
        self.tones = tones
        self.agents = agents
        self.inband_dtmf = inband_dtmf
        self.clock = clock
        self.wall = wall
        self.providers: dict[str, Provider] = {
            name: DataProvider(name, store) for name in ("weather", "directory")
        }
        self.calls: Any = None  # the CallController, attached by the runtime (it needs us too)
        self.music = encode_loop(melody(), bitrate)
        self._sessions: dict[str, CallSession] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._menus: dict[str, tuple[int, m.Menu]] = {}

    def attach(self, calls: Any) -> None:
        self.calls = calls
        self.agents.attach(calls, self)

    # ----------------------------------------------------------------------------- menus

    async def publish(self, number: str, document: Any) -> int:
        """Validates and stores a new version; the previous one stays live if this fails."""
        if not number.isdigit() or not 2 <= len(number) <= 20:
            raise BadRequest("hotline numbers are 2-20 digits", code="bad_number", status=422)
        try:
            parsed = m.parse(document, tuple(self.providers))
        except m.MenuError as exc:
            raise BadRequest(str(exc), code="invalid_menu", status=422) from exc
        try:
            async with self.store.session() as session:
                latest = await session.scalar(
                    select(func.max(MenuVersion.version)).where(MenuVersion.number == number)
                )
                version = (latest or 0) + 1
                session.add(
                    MenuVersion(
                        number=number,
                        version=version,
                        document=json.dumps(document, ensure_ascii=False),
                        created_at=self.wall(),
                    )
                )
        except IntegrityError as exc:  # another node published this number at the same time
            raise Conflict(
                "another version of this menu was published at the same moment; try again",
                code="menu_conflict",
            ) from exc
        self._menus[number] = (version, parsed)
        self._spawn(self._prepare(parsed))
        return version

    async def menu(self, number: str) -> tuple[int, dict[str, Any]] | None:
        async with self.store.session() as session:
            row = await session.scalar(
                select(MenuVersion)
                .where(MenuVersion.number == number)
                .order_by(MenuVersion.version.desc())
                .limit(1)
            )
            return (row.version, json.loads(row.document)) if row else None

    async def numbers(self) -> list[tuple[str, int]]:
        async with self.store.session() as session:
            rows = await session.execute(
                select(MenuVersion.number, func.max(MenuVersion.version)).group_by(
                    MenuVersion.number
                )
            )
            return sorted((n, v) for n, v in rows)

    async def _live_menu(self, number: str) -> tuple[int, m.Menu] | None:
        found = await self.menu(number)
        if found is None:
            return None
        version, document = found
        cached = self._menus.get(number)
        if cached is None or cached[0] != version:  # another node published a newer one
            cached = (version, m.parse(document, tuple(self.providers)))
            self._menus[number] = cached
        return cached

    async def _prepare(self, menu: m.Menu) -> None:
        """Speaks every prompt once ahead of the first caller, so nobody waits for TTS."""
        for prompt in menu.prompts():
            try:
                await self._clip(prompt)
            except ChorusError as exc:
                log.warning("could not prepare a prompt: %s", exc)

    # --------------------------------------------------------------------- ServiceDesk

    def handles(self, destination: str) -> bool:
        return destination.startswith(PREFIX)

    async def check(self, destination: str) -> None:
        number = destination[len(PREFIX) :]
        if not number.isdigit() or await self.menu(number) is None:
            raise NotFound(f"no hotline answers {number!r}", code="hotline_not_found")

    async def open(self, call_id: str, caller_id: str, destination: str, leg: Any) -> None:
        number = destination[len(PREFIX) :]
        found = await self._live_menu(number)
        if found is None:  # unpublished in between: end politely
            self._spawn(self.calls.end_service_call(call_id))
            return
        version, menu = found
        session = CallSession(call_id, number, menu, version, leg)
        self._sessions[call_id] = session
        if self.inband_dtmf:
            self._listen_for_tones(call_id, leg)
        async with self.store.session() as db:
            db.add(
                HotlineCall(
                    call_id=call_id,
                    number=number,
                    caller_id=caller_id,
                    started_at=self.wall(),
                    menu_version=version,
                )
            )
        state, commands = m.start(menu, self.clock(), self.wall())
        await self._apply(session, state, commands)

    def _listen_for_tones(self, call_id: str, leg: Any) -> None:
        """Menu keys sent as tones in the caller's audio. A leg in a media worker finds them
        there; any other leg hands this process its audio to decode."""

        def pressed(key: str) -> None:
            self._spawn(self.dtmf(call_id, key))

        if hasattr(leg, "detect_tone_keys"):
            leg.detect_tone_keys(pressed)
            return
        keys = InbandDtmf()

        def heard(payload: bytes, _timestamp: int) -> None:
            for key in keys.feed_opus(payload):
                pressed(key)

        leg.on_audio = heard

    async def dtmf(self, call_id: str, digits: str) -> None:
        session = self._sessions.get(call_id)
        if session is None:
            return
        for key in digits[:32]:
            if session.queue is not None:  # waiting for an operator: keys do nothing
                return
            state, commands = m.digit(session.menu, session.state, key, self.clock())
            await self._apply(session, state, commands)

    async def offer_failed(self, call_id: str, agent_ids: list[str], reason: str) -> None:
        session = self._sessions.get(call_id)
        await self.agents.offer_failed(agent_ids, reason, session.queue if session else None)
        if session is None:
            return
        session.offering = []
        session.declined_by.update(agent_ids)
        if session.queue is None:  # a direct transfer nobody took
            await self._say_then_hang_up(session, _text(session.menu, "nobody"))
            return
        await self.agents.dispatch(session.queue)

    async def connected(self, call_id: str, agent_id: str) -> None:
        session = self._sessions.get(call_id)
        if session is None:
            return
        session.cancel()
        _stop_listening(session.leg)  # talking to a person now: no more menu keys to detect
        session.operator = agent_id
        session.outcome = "operator"
        if session.queued_at is not None:
            session.wait_s = self.clock() - session.queued_at
        queue, session.queue = session.queue, None
        await self.bus.delete(f"hotline-waiting:{{{call_id}}}")
        if queue is not None:
            await self.agents.leave_waiting(queue, call_id)
        rung, session.offering = session.offering, []
        await self.agents.started_call(agent_id, rung)
        async with self.store.session() as db:  # known to every node, should this one die
            row = await db.get(HotlineCall, call_id)
            if row is not None:
                row.operator_id = agent_id

    async def closed(self, call_id: str, reason: str) -> None:
        session = self._sessions.pop(call_id, None)
        if session is None:
            await self._closed_elsewhere(call_id)
            return
        session.cancel()
        if session.queue is not None:
            session.outcome = "abandoned"
            session.wait_s = self.clock() - (session.queued_at or self.clock())
            await self.agents.leave_waiting(session.queue, call_id)
        if session.operator is not None:
            await self.agents.ended_call(session.operator)
        async with self.store.session() as db:
            row = await db.get(HotlineCall, call_id)
            if row is not None:
                row.ended_at = self.wall()
                row.path = json.dumps(session.path)
                row.outcome = session.outcome if session.outcome != "in_progress" else "hangup"
                row.operator_id, row.wait_s = session.operator, session.wait_s
                row.queue = row.queue or None

    async def _closed_elsewhere(self, call_id: str) -> None:
        """The call's session was on a node that died, and this node's sweep ended the call:
        what that session would have closed (its place in a queue, its operator, its
        record) is closed from the shared state instead."""
        entry = await self.bus.get(f"hotline-waiting:{{{call_id}}}")
        if entry is not None:
            await self.agents.leave_waiting(str(entry["queue"]), call_id)
        async with self.store.session() as db:
            row = await db.get(HotlineCall, call_id)
            if row is None or row.ended_at is not None:
                return
            row.ended_at = self.wall()
            row.outcome = "operator" if row.operator_id else "failure"
            operator = row.operator_id
        if operator is not None:
            await self.agents.ended_call(operator)

    # ----------------------------------------------------------------- carrying it out

    async def _apply(
        self, session: CallSession, state: m.Session, commands: list[m.Command]
    ) -> None:
        session.state = state
        plays: list[m.Play] = []
        for command in commands:
            if isinstance(command, m.Play):
                plays.append(command)
                continue
            if plays:
                await self._play(session, plays)
                plays = []
            await self._carry_out(session, command)
        if plays:
            await self._play(session, plays)

    async def _carry_out(self, session: CallSession, command: m.Command) -> None:
        match command:
            case m.StopPlayback():
                session.cancel("prompt")
                session.leg.play(None)
            case m.SetTimer(seq, at):
                self._later(session, "timer", at - self.clock(), lambda: self._timer(session, seq))
            case m.Visit(node, option):
                session.path.append(node if option is None else f"{node}:{option}")
            case m.Lookup(provider, key, seq):
                self._spawn(self._lookup(session, provider, key, seq))
            case m.Transfer(username):
                session.outcome = "transfer"
                self._spawn(self._transfer(session, username))
            case m.Enqueue(queue):
                await self._enqueue(session, queue)
            case m.Hangup(reason):
                if session.outcome == "in_progress":  # overflow and transfer keep theirs
                    session.outcome = {"closed": "closed", "failure": "failure"}.get(
                        reason, "menu_end"
                    )
                self._spawn(self.calls.end_service_call(session.call_id))

    async def _play(self, session: CallSession, plays: list[m.Play]) -> None:
        """Plays one prompt (several parts back to back), then reports it done."""
        clips = []
        for play in plays:
            try:
                clips.append(await self._clip(play.prompt))
            except ChorusError as exc:
                log.warning("call=%s prompt unavailable: %s", session.call_id, exc)
        seq = plays[0].seq
        if not clips:
            self._later(session, "prompt", 0.0, lambda: self._prompt_done(session, seq))
            return
        clip = OpusClip(tuple(p for c in clips for p in c.packets))
        session.leg.play(clip, loop=False)
        self._later(
            session, "prompt", clip.duration_s + 0.1, lambda: self._prompt_done(session, seq)
        )

    async def _clip(self, prompt: m.Prompt) -> OpusClip:
        if prompt.say is not None:
            return await self.speaker.say(prompt.say, prompt.language)
        clip = await self.tones.clip_for_tone(prompt.tone_id or "")
        if clip is None:
            raise NotFound(f"no tone {prompt.tone_id!r}", code="tone_not_found")
        return clip

    async def _prompt_done(self, session: CallSession, seq: int) -> None:
        state, commands = m.prompt_done(session.menu, session.state, seq, self.clock())
        await self._apply(session, state, commands)

    async def _timer(self, session: CallSession, seq: int) -> None:
        state, commands = m.timer(session.menu, session.state, seq, self.clock())
        await self._apply(session, state, commands)

    async def _lookup(self, session: CallSession, name: str, key: str, seq: int) -> None:
        provider = self.providers.get(name)
        if provider is None and name in session.menu.http_providers:
            url, timeout = session.menu.http_providers[name]
            provider = HttpJsonProvider(url, timeout_s=timeout)
        values = None
        try:
            if provider is not None:
                values = await asyncio.wait_for(provider.lookup(key), LOOKUP_TIMEOUT_S)
        except (ProviderError, TimeoutError) as exc:
            log.warning("call=%s lookup %s failed: %s", session.call_id, name, exc)
        if session.call_id not in self._sessions:
            return
        if values is not None and session.menu.language == "zh":
            # Chinese menus speak the *_zh fields where the data has them.
            values = {**values, **{k[:-3]: v for k, v in values.items() if k.endswith("_zh")}}
        state, commands = m.lookup_result(session.menu, session.state, seq, values, self.clock())
        await self._apply(session, state, commands)

    async def _transfer(self, session: CallSession, username: str) -> None:
        user = await self.store.user_by_username(username)
        rung = []
        if user is not None:
            rung = await self.calls.offer(
                session.call_id, [user.id], ring_s=TRANSFER_RING_S, context=self._context(session)
            )
        if not rung:
            await self._say_then_hang_up(session, _text(session.menu, "nobody"))

    async def _say_then_hang_up(self, session: CallSession, text: str) -> None:
        if session.call_id not in self._sessions:
            return
        state = session.state
        await self._apply(
            session,
            *m.resume(session.menu, state, {"say": text, "then": {"hangup": True}}, self.clock()),
        )

    def _context(self, session: CallSession) -> dict[str, Any]:
        return {
            "hotline": session.number,
            "menu_version": session.version,
            "path": list(session.path),
            "gathered": dict(session.state.gathered),
            "queue": session.queue,
        }

    # --------------------------------------------------------------------- the queue

    async def _enqueue(self, session: CallSession, queue: str) -> None:
        settings = await self.agents.settings(queue)
        session.queue, session.queued_at = queue, self.clock()
        session.outcome = "queued"
        async with self.store.session() as db:
            row = await db.get(HotlineCall, session.call_id)
            if row is not None:
                row.queue = queue
        session.leg.play(await self._music(settings.music_tone_id))
        self._later(session, "max_wait", settings.max_wait_s, lambda: self._overflow(session))
        self._later(session, "announce", 1.0, lambda: self._announce(session))
        await self.agents.join_waiting(queue, session.call_id, self._context(session))
        await self.agents.dispatch(queue)

    async def _music(self, tone_id: str | None) -> OpusClip:
        if tone_id:
            clip = await self.tones.clip_for_tone(tone_id)
            if clip is not None:
                return clip
        return self.music

    async def _announce(self, session: CallSession) -> None:
        if session.queue is None or session.offering:
            return
        settings = await self.agents.settings(session.queue)
        position = await self.agents.position(session.queue, session.call_id)
        if position:
            text = _text(session.menu, "position").format(n=position)
            try:
                words = await self.speaker.say(text, session.menu.language)
                music = await self._music(settings.music_tone_id)
                # the announcement, then the music again from its start
                session.leg.play(OpusClip(words.packets + music.packets * 20), loop=False)
            except ChorusError as exc:
                log.warning("call=%s announcement failed: %s", session.call_id, exc)
        self._later(session, "announce", settings.announce_every_s, lambda: self._announce(session))

    async def _overflow(self, session: CallSession) -> None:
        if session.queue is None or session.call_id not in self._sessions:
            return
        queue = session.queue
        session.queue = None
        session.cancel("announce")
        session.outcome = "overflow"
        session.wait_s = self.clock() - (session.queued_at or self.clock())
        await self.agents.leave_waiting(queue, session.call_id)
        await self._say_then_hang_up(session, _text(session.menu, "overflow"))

    async def offer_next(
        self, queue: str, call_id: str, agent_ids: list[str], ring_s: float
    ) -> list[str]:
        """Called by the agent desk's dispatcher: ring these agents for this caller."""
        session = self._sessions.get(call_id)
        if session is None or session.queue != queue or session.offering:
            return []
        rung = await self.calls.offer(
            call_id, agent_ids, ring_s=ring_s, context=self._context(session)
        )
        session.offering = rung
        return rung

    def waiting_skip(self, call_id: str) -> frozenset[str]:
        session = self._sessions.get(call_id)
        return frozenset(session.declined_by) if session else frozenset()

    def is_offering(self, call_id: str) -> bool:
        session = self._sessions.get(call_id)
        return bool(session and session.offering)

    # -------------------------------------------------------------------- statistics

    async def stats(self, number: str) -> dict[str, Any]:
        async with self.store.session() as db:
            rows = list(await db.scalars(select(HotlineCall).where(HotlineCall.number == number)))
        outcomes: dict[str, int] = {}
        nodes: dict[str, int] = {}
        options: dict[str, int] = {}
        waits = []
        durations = []
        for row in rows:
            outcomes[row.outcome] = outcomes.get(row.outcome, 0) + 1
            for step in json.loads(row.path or "[]"):
                node, _, option = step.partition(":")
                if option:
                    options[step] = options.get(step, 0) + 1
                else:
                    nodes[node] = nodes.get(node, 0) + 1
            if row.wait_s is not None:
                waits.append(row.wait_s)
            if row.ended_at is not None:
                durations.append((as_utc(row.ended_at) - as_utc(row.started_at)).total_seconds())
        queued = sum(outcomes.get(k, 0) for k in ("operator", "abandoned", "overflow"))
        return {
            "number": number,
            "calls": len(rows),
            "outcomes": outcomes,
            "node_visits": nodes,
            "options_chosen": options,
            "queued": queued,
            "abandon_rate": round(outcomes.get("abandoned", 0) / queued, 3) if queued else 0.0,
            "wait_s": _summary(waits),
            "duration_s": _summary(durations),
            "billable_minutes": round(sum(-(-d // 60) for d in durations)),
        }

    async def records(self, number: str, limit: int) -> list[dict[str, Any]]:
        async with self.store.session() as db:
            rows = await db.scalars(
                select(HotlineCall)
                .where(HotlineCall.number == number)
                .order_by(HotlineCall.started_at.desc())
                .limit(limit)
            )
            return [
                {
                    "call_id": r.call_id,
                    "caller_id": r.caller_id,
                    "started_at": as_utc(r.started_at),
                    "ended_at": as_utc(r.ended_at) if r.ended_at else None,
                    "path": json.loads(r.path or "[]"),
                    "outcome": r.outcome,
                    "queue": r.queue,
                    "operator_id": r.operator_id,
                    "wait_s": r.wait_s,
                    "menu_version": r.menu_version,
                }
                for r in rows
            ]

    # ------------------------------------------------------------------------ helpers

    def _later(
        self,
        session: CallSession,
        name: str,
        delay: float,
        make: Callable[[], Coroutine[Any, Any, Any]],
    ) -> None:
        """Runs `make()` after `delay` unless cancelled or the call is gone by then (the
        coroutine is only created when it runs, so a cancelled timer leaves nothing behind)."""
        session.cancel(name)

        def fire() -> None:
            session.timers.pop(name, None)
            if session.call_id in self._sessions:
                self._spawn(make())

        session.timers[name] = asyncio.get_running_loop().call_later(max(0.0, delay), fire)

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("hotline task failed", exc_info=task.exception())

    async def shutdown(self) -> None:
        for session in self._sessions.values():
            session.cancel()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


TEXTS = {
    "en": {
        "position": "You are number {n} in the queue. Please hold.",
        "overflow": "Sorry, all our operators are busy. Please call again later. Goodbye.",
        "nobody": "Sorry, nobody can take your call right now. Goodbye.",
    },
    "zh": {
        "position": "您排在第{n}位，请稍候。",
        "overflow": "抱歉，坐席全忙，请稍后再拨。再见。",
        "nobody": "抱歉，暂时无人接听。再见。",
    },
}


def _text(menu: m.Menu, name: str) -> str:
    return TEXTS.get(menu.language, TEXTS["en"])[name]


def _summary(values: list[float]) -> dict[str, float]:
    if not values:
        return {"count": 0, "mean": 0.0, "max": 0.0}
    return {
        "count": len(values),
        "mean": round(sum(values) / len(values), 2),
        "max": round(max(values), 2),
    }


def _stop_listening(leg: Any) -> None:
    if hasattr(leg, "detect_tone_keys"):
        leg.detect_tone_keys(None)
    else:
        leg.on_audio = None
