"""The rooms service: room state in the bus, media in the engine, legs per participant.

Each request loads the room from the bus, applies one rule of `conference.room` under the
room's lock, stores the result, then does the media side (legs, engine channels, recorder)
and publishes the events to the room's users (`user:<id>` channels: the moderator and every
participant's user). All live state (rooms, participants, speakers, which process mixes a
room) is in the bus; legs, channels, encoders and recorders are this process's resources.

A WebRTC participant is reserved in the room before its peer connection is made (so
concurrent joins cannot overfill it) and announced once its leg is attached; one that does
not connect within `connect_timeout_s`, or whose connection fails or closes, is removed.

With several nodes, a room is mixed by the node that created it (or took it over when that
node died): a request that needs its media or its lock and lands on another node is run on
the mixing node (`conference.forward`); only a SIP caller, whose leg is where the call
arrived, must reach the mixing node itself.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import secrets
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from conference import forward
from conference import room as rules
from conference.media import LocalMedia, WorkerMedia
from conference.recording import RecordingInfo
from conference.room import RTP, SIP, WEBRTC, Actor, Participant, Room
from voice.bus import Bus
from voice.errors import BadRequest, ChorusError, Conflict, Forbidden, NotFound, Unavailable
from voice.rpc import NodeRpc

log = logging.getLogger("chorus.rooms")


class RoomLeg(Protocol):
    """A participant's WebRTC leg as the service watches it (the media attaches it)."""

    answer_sdp: str
    on_closed: Callable[[str], None] | None

    async def wait_connected(self, timeout: float) -> bool: ...

    async def close(self) -> None: ...


@dataclass(frozen=True)
class RoomSettings:
    max_participants: int = 100
    speakers: int | None = 3  # K by default; None: everyone who talks is mixed
    pin_attempts: int = 5
    pin_lockout_s: float = 600.0
    connect_timeout_s: float = 20.0
    advertised_host: str | None = None  # what RTP participants are told to send to
    node: str = field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}")

    @property
    def limits(self) -> rules.Limits:
        return rules.Limits(self.pin_attempts, self.pin_lockout_s)


@dataclass(frozen=True)
class RoomView:
    room: Room
    speaking: tuple[str, ...]


@dataclass(frozen=True)
class RecordingFile:
    """A recording and where it is: a file here (`path`), or on another node (`node`)."""

    info: RecordingInfo
    path: Path | None = None
    node: str | None = None


def _key(room_id: str) -> str:
    return f"room:{{{room_id}}}"


def _speaking_key(room_id: str) -> str:
    return f"room:{{{room_id}}}:speaking"


def _rooms_of(user_id: str) -> str:
    return f"rooms-of:{{{user_id}}}"


def _recorded_on(room_id: str) -> str:
    """The nodes holding recordings of the room (in their data dirs); kept after it ends."""
    return f"room:{{{room_id}}}:recorded-on"


ALL_ROOMS = "rooms:all"
DEFAULT_SPEAKERS = "default"  # create(max_speakers=...): the server's K; None mixes everyone


class RoomService:
    def __init__(
        self,
        *,
        bus: Bus,
        media: LocalMedia | WorkerMedia,
        settings: RoomSettings | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.bus = bus
        self.settings = settings or RoomSettings()
        self.media = media
        self.recordings = media.recordings
        self.clock = clock
        media.on_speaking = self._on_speaking
        media.on_lost = self._media_lost
        self._legs: dict[tuple[str, str], Any] = {}
        # The rooms this node mixes, as last written to the bus (see `resync`).
        self._mixed: dict[str, Room] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closing = False
        self.rpc: NodeRpc | None = None  # the other nodes (set by `serve_nodes`)

    # ------------------------------------------------------------------ rooms

    async def create(
        self,
        actor: Actor,
        *,
        name: str | None = None,
        pin: str | None = None,
        max_participants: int | None = None,
        max_speakers: int | str | None = DEFAULT_SPEAKERS,
        record: bool = False,
    ) -> RoomView:
        limit = self.settings.max_participants
        size = limit if max_participants is None else max_participants
        if size > limit:
            raise BadRequest(f"max_participants is at most {limit} here", code="bad_size")
        speakers = self.settings.speakers if max_speakers == DEFAULT_SPEAKERS else max_speakers
        room_id = secrets.token_hex(8)
        room = rules.create(
            room_id,
            actor,
            name=name,
            pin=pin,
            max_participants=size,
            max_speakers=speakers,  # type: ignore[arg-type]
            record=record,
            now=self.clock(),
            node=self.settings.node,
        )
        await self._save(room)
        await self.bus.add_member(ALL_ROOMS, room_id)
        if room.moderator_id is not None:
            await self.bus.add_member(_rooms_of(room.moderator_id), room_id)
        log.info("room=%s created by %s", room_id, actor.user_id or "admin")
        return RoomView(room, ())

    async def get(self, actor: Actor, room_id: str) -> RoomView:
        room = await self._visible(actor, room_id)
        return RoomView(room, await self._speaking(room_id))

    async def list(self, actor: Actor) -> list[RoomView]:
        if actor.admin:
            ids = await self.bus.members(ALL_ROOMS)
        elif actor.user_id is not None:
            ids = await self.bus.members(_rooms_of(actor.user_id))
        else:
            ids = set()
        views = []
        for room_id in sorted(ids):
            room = await self._load(room_id)
            if room is not None and room.can_see(actor):
                views.append(RoomView(room, await self._speaking(room_id)))
        return sorted(views, key=lambda v: v.room.created_at)

    # ------------------------------------------------------------------ joining

    async def join_webrtc(
        self,
        actor: Actor,
        room_id: str,
        *,
        sdp: str,
        pin: str | None = None,
        display: str | None = None,
        default_display: str = "guest",
    ) -> tuple[Participant, str]:
        if actor.user_id is None:
            message = "join with a user's token (the admin key is nobody)"
            raise Forbidden(message, code="not_allowed")
        if node := await self._mixed_elsewhere(room_id):  # its leg is made where it is mixed
            return await self._forward(
                node,
                "join_webrtc",
                actor,
                room_id,
                sdp=sdp,
                pin=pin,
                display=display,
                default_display=default_display,
            )
        name = rules.clean_display(display, default_display)
        participant = Participant(
            "p" + secrets.token_hex(6), name, WEBRTC, actor.user_id, self.clock()
        )
        await self._reserve(actor, room_id, participant, pin)
        label = f"room={room_id} {participant.participant_id}"
        try:
            leg = await self.media.webrtc_leg(room_id, sdp, label)
        except BaseException:
            await self._unreserve(room_id, participant.participant_id)
            raise
        participant = await self._attach(room_id, participant, leg, "opus")
        self._spawn(self._watch_connect(room_id, participant.participant_id, leg))
        return participant, leg.answer_sdp

    async def join_rtp(
        self,
        actor: Actor,
        room_id: str,
        *,
        host: str,
        port: int,
        codec: str,
        payload_type: int | None = None,
        display: str | None = None,
        rtcp_mux: bool = False,
        audio_level_id: int | None = None,
    ) -> tuple[Participant, str, int]:
        if node := await self._mixed_elsewhere(room_id):
            return await self._forward(
                node,
                "join_rtp",
                actor,
                room_id,
                host=host,
                port=port,
                codec=codec,
                payload_type=payload_type,
                display=display,
                rtcp_mux=rtcp_mux,
                audio_level_id=audio_level_id,
            )
        name = rules.clean_display(display, f"{codec} {host}:{port}")
        participant = Participant(
            "p" + secrets.token_hex(6), name, RTP, actor.user_id, self.clock(), codec=codec
        )
        await self._reserve(actor, room_id, participant, None)
        try:
            leg = await self.media.rtp_leg(
                room_id,
                remote_host=host,
                remote_port=port,
                codec=codec,
                payload_type=payload_type,
                label=f"room={room_id} {participant.participant_id}",
                rtcp_mux=rtcp_mux,
                audio_level_id=audio_level_id,
            )
        except BaseException:
            await self._unreserve(room_id, participant.participant_id)
            raise
        participant = await self._attach(room_id, participant, leg, codec)
        server_host = self.settings.advertised_host or self.media.rtp_host
        return participant, server_host, leg.local_port

    async def pin_needed(self, room_id: str) -> bool | None:
        """For a SIP caller at the door: does the room ask for a PIN? None: no such room."""
        room = await self._load(room_id)
        return None if room is None else room.pin_hash is not None

    async def join_sip(
        self, room_id: str, leg: Any, *, caller: str, pin: str | None, display: str
    ) -> Participant:
        """A SIP caller joins with its answered `SipLeg` (Opus both ways, like WebRTC)."""
        shown = "".join(c for c in " ".join(display.split()) if c.isprintable())
        name = rules.clean_display(shown[: rules.MAX_DISPLAY] or None, "SIP caller")
        participant = Participant("p" + secrets.token_hex(6), name, SIP, None, self.clock())
        await self._reserve(Actor(user_id=f"sip:{caller}"), room_id, participant, pin)
        return await self._attach(room_id, participant, leg, "opus")

    async def _reserve(
        self, actor: Actor, room_id: str, participant: Participant, pin: str | None
    ) -> None:
        async with self._lock(room_id):
            room = await self._require(room_id)
            admission = rules.admit(
                room,
                actor,
                pin=pin,
                now=self.clock(),
                kind=participant.kind,
                limits=self.settings.limits,
            )
            if admission.room is not room:
                await self._save(admission.room)
            if admission.error is not None:
                raise admission.error
            self._check_node(room)
            await self._save(rules.add(admission.room, participant))
            if participant.kind == WEBRTC and participant.user_id is not None:
                await self.bus.add_member(_rooms_of(participant.user_id), room_id)

    async def _unreserve(self, room_id: str, pid: str) -> None:
        async with self._lock(room_id):
            room = await self._load(room_id)
            if room is not None and room.participant(pid) is not None:
                await self._save(rules.drop(room, pid))

    async def _attach(
        self, room_id: str, participant: Participant, leg: Any, codec: str
    ) -> Participant:
        pid = participant.participant_id
        async with self._lock(room_id):
            room = await self._load(room_id)
            current = room.participant(pid) if room is not None else None
            if room is None or current is None:
                await _close(leg)
                message = "the room ended or you were removed while joining"
                raise Conflict(message, code="room_ended")
            if not self.media.is_open(room_id):
                await self._open_media(room, leg)
                if room.record:
                    await self.bus.add_member(_recorded_on(room_id), self.settings.node)
            await self.media.attach(room_id, pid, codec, leg, current.muted)
            if hasattr(leg, "on_closed"):
                leg.on_closed = lambda reason: self._leg_closed(room_id, pid, reason)
            self._legs[(room_id, pid)] = leg
            await self._publish(room, _participant_event("room.participant_joined", room, current))
        log.info("room=%s %s joined (%s, %s)", room_id, pid, current.kind, codec)
        return current

    async def _watch_connect(self, room_id: str, pid: str, leg: RoomLeg) -> None:
        if not await leg.wait_connected(self.settings.connect_timeout_s):
            log.info("room=%s %s never connected", room_id, pid)
            await self._gone(room_id, pid, "failed")

    def _leg_closed(self, room_id: str, pid: str, reason: str) -> None:
        if not self._closing and (room_id, pid) in self._legs:
            why = "failed" if reason == "failed" else "disconnected"
            self._spawn(self._gone(room_id, pid, why))

    async def _gone(self, room_id: str, pid: str, reason: str) -> None:
        """A participant's media ended without a request: drop it from the room."""
        async with self._lock(room_id):
            room = await self._load(room_id)
            participant = room.participant(pid) if room is not None else None
            if room is None or participant is None:
                return
            await self._save(rules.drop(room, pid))
            await self._forget_user(room, participant)
            await self._publish(room, _left(room, participant, reason))
            await self._detach(room_id, pid)

    # ------------------------------------------------------------------ changes

    # Each change is made under the room's lock on the node mixing it (and its engine told).

    async def set_muted(self, actor: Actor, room_id: str, pid: str, muted: bool) -> Participant:
        if node := await self._mixed_elsewhere(room_id):
            return await self._forward(node, "set_muted", actor, room_id, pid=pid, muted=muted)
        async with self._lock(room_id):
            room = await self._visible(actor, room_id)
            room, changed = rules.set_muted(room, actor, pid, muted)
            participant = room.participant(pid)
            assert participant is not None
            if changed:
                await self._save(room)
                self.media.set_muted(room_id, pid, participant.muted)
                await self._publish(room, _muted_event(room, participant))
            return participant

    async def mute_all(self, actor: Actor, room_id: str, muted: bool = True) -> list[Participant]:
        if node := await self._mixed_elsewhere(room_id):
            return await self._forward(node, "mute_all", actor, room_id, muted=muted)
        async with self._lock(room_id):
            room = await self._visible(actor, room_id)
            if muted:
                room, changed = rules.mute_all(room, actor)
            else:
                room, changed = rules.unmute_all(room, actor)
            if changed:
                await self._save(room)
            for participant in changed:
                self.media.set_muted(room_id, participant.participant_id, participant.muted)
                await self._publish(room, _muted_event(room, participant))
            return changed

    async def set_locked(self, actor: Actor, room_id: str, locked: bool) -> Room:
        if node := await self._mixed_elsewhere(room_id):  # bus state only, but under its lock
            return await self._forward(node, "set_locked", actor, room_id, locked=locked)
        async with self._lock(room_id):
            room = await self._visible(actor, room_id)
            updated = rules.set_locked(room, actor, locked)
            if updated != room:
                await self._save(updated)
                event = {"type": "room.locked", "room_id": room_id, "locked": locked}
                await self._publish(updated, event)
            return updated

    async def remove(self, actor: Actor, room_id: str, pid: str) -> str:
        """Leave or kick; returns "left" or "kicked"."""
        if node := await self._mixed_elsewhere(room_id):
            return await self._forward(node, "remove", actor, room_id, pid=pid)
        async with self._lock(room_id):
            room = await self._visible(actor, room_id)
            updated, participant, reason = rules.remove(room, actor, pid)
            await self._save(updated)
            await self._forget_user(updated, participant)
            await self._publish(room, _left(room, participant, reason))
            await self._detach(room_id, pid)
        log.info("room=%s %s %s", room_id, pid, reason)
        return reason

    async def end(self, actor: Actor, room_id: str) -> None:
        if node := await self._mixed_elsewhere(room_id):
            await self._forward(node, "end", actor, room_id)
            return
        async with self._lock(room_id):
            room = await self._visible(actor, room_id)
            rules.check_end(room, actor)
            await self._end(room, "ended")
        self._locks.pop(room_id, None)

    async def _end(self, room: Room, reason: str) -> None:
        room_id = room.room_id
        self._mixed.pop(room_id, None)
        await self.bus.delete(_key(room_id))
        await self.bus.delete(_speaking_key(room_id))
        await self.bus.remove_member(ALL_ROOMS, room_id)
        for user in room.users():
            await self.bus.remove_member(_rooms_of(user), room_id)
        for participant in room.participants:
            await self._publish(room, _left(room, participant, reason))
        await self._publish(room, {"type": "room.ended", "room_id": room_id, "reason": reason})
        for participant in room.participants:
            await self._detach(room_id, participant.participant_id)
        await self._close_media(room_id)
        log.info("room=%s %s", room_id, reason)

    # ------------------------------------------------------------------ recordings

    async def recordings_of(self, actor: Actor, room_id: str) -> list[RecordingInfo]:
        return [found.info for found in await self._recordings(actor, room_id)]

    async def recording_file(
        self, actor: Actor, room_id: str, recording_id: str | None
    ) -> RecordingFile:
        """The recording (None: the latest finished one, or the one in progress): a file
        here, or on the node that made it (read it with `read_recording`)."""
        found = await self._recordings(actor, room_id)
        if recording_id is None:
            finished = [r for r in found if r.info.ended_at is not None] or found
            if not finished:
                raise NotFound("this room has no recording yet", code="recording_not_found")
            chosen = finished[-1]
        else:
            match = [r for r in found if r.info.recording_id == recording_id]
            if not match:
                raise NotFound("no such recording", code="recording_not_found")
            chosen = match[0]
        if chosen.node is not None:
            return chosen
        here = self.recordings.get(room_id, chosen.info.recording_id)
        if here is None:
            raise NotFound("no such recording", code="recording_not_found")
        return RecordingFile(here[0], path=here[1])

    async def read_recording(self, actor: Actor, found: RecordingFile) -> AsyncIterator[bytes]:
        """A recording on another node, chunk by chunk. The first chunk is fetched before
        this returns, so a node that cannot be reached is an error, not a cut-off file."""
        assert found.node is not None and self.rpc is not None
        rpc, node, info = self.rpc, found.node, found.info
        first = await forward.recording_chunk(rpc, node, actor, info.room_id, info.recording_id, 0)

        async def chunks() -> AsyncIterator[bytes]:
            data, offset = first, 0
            while data:
                yield data
                offset += len(data)
                data = await forward.recording_chunk(
                    rpc, node, actor, info.room_id, info.recording_id, offset
                )

        return chunks()

    def recordings_here(self, actor: Actor, room_id: str) -> list[RecordingInfo]:
        """The recordings of the room in this node's data dir that `actor` may have."""
        return [info for info in self.recordings.list(room_id) if _may_have(actor, info)]

    async def recording_chunk_here(
        self, actor: Actor, room_id: str, recording_id: str, offset: int, size: int
    ) -> bytes:
        found = self.recordings.get(room_id, recording_id)
        if found is None or not _may_have(actor, found[0]) or offset < 0:
            raise NotFound("no such recording", code="recording_not_found")
        return await asyncio.to_thread(_read, found[1], offset, size)

    async def _recordings(self, actor: Actor, room_id: str) -> list[RecordingFile]:
        room = await self._load(room_id)
        if room is not None and room.can_see(actor) and not room.is_manager(actor):
            raise Forbidden("recordings are for the room's moderator", code="not_moderator")
        found = [RecordingFile(info) for info in self.recordings_here(actor, room_id)]
        if self.rpc is not None:
            others = await self.bus.members(_recorded_on(room_id)) - {self.settings.node}
            for node in sorted(others):
                try:
                    infos = await forward.recordings(self.rpc, node, actor, room_id)
                except ChorusError as exc:  # gone (with its data dir) or not answering
                    log.warning("room=%s recordings on %s unavailable: %s", room_id, node, exc)
                    continue
                found += [RecordingFile(info, node=node) for info in infos]
        if not found and (room is None or not room.is_manager(actor)):
            raise NotFound("no such room", code="room_not_found")
        return sorted(found, key=lambda r: (r.info.started_at, r.info.recording_id))

    # ------------------------------------------------------------------ lifecycle

    async def sweep(self, alive: Callable[[str], Awaitable[bool]]) -> int:
        """Rooms whose mixing node is gone: one surviving node (claimed atomically in the bus)
        takes each over, empty, and tells the room's users who was lost."""
        taken = 0
        for room_id in sorted(await self.bus.members(ALL_ROOMS)):
            room = await self._load(room_id)
            if room is None:
                await self.bus.remove_member(ALL_ROOMS, room_id)
                continue
            if not room.node or room.node == self.settings.node or await alive(room.node):
                continue
            claim = f"{_key(room_id)}:taken-from:{room.node}"
            if not await self.bus.put_if_absent(claim, {"by": self.settings.node}, ttl_s=60):
                continue
            async with self._lock(room_id):
                room = await self._load(room_id)
                if room is None:
                    continue
                adopted = rules.taken_over(room, self.settings.node)
                await self._save(adopted)
                await self.bus.delete(_speaking_key(room_id))
                for participant in room.participants:
                    await self._forget_user(adopted, participant)
                    await self._publish(room, _left(room, participant, "failed"))
            log.warning("room=%s taken over from node %s, which is gone", room_id, room.node)
            taken += 1
        return taken

    async def stop(self) -> None:
        """Ends every room this process mixes (reason "shutdown") and closes their media."""
        self._closing = True
        for room_id in {room_id for room_id, _ in self._legs} | self.media.open_rooms():
            room = await self._load(room_id)
            if room is not None:
                try:
                    await self._end(room, "shutdown")
                except Exception:
                    log.exception("room=%s not ended cleanly", room_id)
        for room_id, pid in list(self._legs):
            await self._detach(room_id, pid)
        for room_id in self.media.open_rooms():
            await self.media.close_room(room_id)
        await self.media.stop()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    @property
    def open_legs(self) -> int:
        return len(self._legs)

    def serve_nodes(self, rpc: NodeRpc) -> None:
        """Forwards requests about rooms other nodes mix through `rpc`, and serves theirs."""
        self.rpc = rpc
        forward.serve(rpc, self)

    # ------------------------------------------------------------------ helpers

    async def _open_media(self, room: Room, leg: Any) -> None:
        recording = None
        if room.record:
            recording = RecordingInfo(
                recording_id=self.recordings.new_id(),
                room_id=room.room_id,
                room_name=room.name,
                moderator_id=room.moderator_id,
                started_at=self.clock(),
            )
        await self.media.open_room(room.room_id, room.max_speakers, recording, near=leg)

    async def _close_media(self, room_id: str) -> None:
        if self.media.is_open(room_id):
            await self.media.close_room(room_id)

    async def _detach(self, room_id: str, pid: str) -> None:
        leg = self._legs.pop((room_id, pid), None)
        await self.media.detach(room_id, pid, leg)
        if self.media.is_open(room_id) and self.media.is_empty(room_id):
            await self._close_media(room_id)

    def _media_lost(self, room_ids: list[str]) -> None:
        """The worker mixing these rooms died: they end (reason "failed"), as they would
        with their node, and their participants hear why."""
        for room_id in room_ids:
            for key in [key for key in self._legs if key[0] == room_id]:
                self._legs.pop(key)
            self._spawn(self._end_lost(room_id))

    async def _end_lost(self, room_id: str) -> None:
        async with self._lock(room_id):
            room = await self._load(room_id)
            if room is not None:
                log.warning("room=%s ends: its media worker was lost", room_id)
                await self._end(room, "failed")

    async def _forget_user(self, room: Room, participant: Participant) -> None:
        user = participant.user_id
        if user is None or participant.kind != WEBRTC or user == room.moderator_id:
            return
        if not any(p.user_id == user and p.kind == WEBRTC for p in room.participants):
            await self.bus.remove_member(_rooms_of(user), room.room_id)

    async def mixing_node(self, room_id: str) -> str | None:
        """The other node mixing this room (None: this one, or the room does not exist)."""
        return await self._mixed_elsewhere(room_id)

    async def _mixed_elsewhere(self, room_id: str) -> str | None:
        """The node mixing this room, when it is not this one. A request from someone who
        may not see the room goes there too: that node refuses it as this one would."""
        if self.rpc is None:
            return None
        room = await self._load(room_id)
        if room is None or not room.node or room.node == self.settings.node:
            return None
        return room.node

    async def _forward(self, node: str, what: str, actor: Actor, room_id: str, **args: Any) -> Any:
        assert self.rpc is not None
        log.debug("room=%s %s by %s: forwarded to %s", room_id, what, actor.user_id, node)
        return await forward.request(self.rpc, node, what, actor, room_id, **args)

    def _check_node(self, room: Room) -> None:
        if room.node and room.node != self.settings.node:
            raise Unavailable("this room is mixed by another node", code="room_elsewhere")

    async def _load(self, room_id: str) -> Room | None:
        message = await self.bus.get(_key(room_id))
        return Room.from_message(message) if message else None

    async def _require(self, room_id: str) -> Room:
        room = await self._load(room_id)
        if room is None:
            raise NotFound("no such room", code="room_not_found")
        return room

    async def _visible(self, actor: Actor, room_id: str) -> Room:
        room = await self._load(room_id)
        if room is None or not room.can_see(actor):
            raise NotFound("no such room", code="room_not_found")
        return room

    async def _save(self, room: Room) -> None:
        if room.node == self.settings.node:
            self._mixed[room.room_id] = room
        else:
            self._mixed.pop(room.room_id, None)
        await self.bus.put(_key(room.room_id), room.to_message())

    async def resync(self) -> int:
        """The bus lost its data (a Redis restart): write back the rooms this node mixes,
        with who is in them, so they can be found, joined and moderated again."""
        restored = 0
        for room_id in list(self._mixed):
            async with self._lock(room_id):
                room = self._mixed.get(room_id)
                if room is None or await self._load(room_id) is not None:
                    continue
                await self._save(room)
                await self.bus.add_member(ALL_ROOMS, room_id)
                for user in room.users():
                    await self.bus.add_member(_rooms_of(user), room_id)
                if self.media.is_open(room_id) and room.record:
                    await self.bus.add_member(_recorded_on(room_id), self.settings.node)
                restored += 1
        return restored

    async def _speaking(self, room_id: str) -> tuple[str, ...]:
        message = await self.bus.get(_speaking_key(room_id))
        return tuple(message["participant_ids"]) if message else ()

    def _on_speaking(self, room_id: str, speakers: tuple[str, ...]) -> None:
        if not self._closing:
            self._spawn(self._announce_speakers(room_id, speakers))

    async def _announce_speakers(self, room_id: str, speakers: tuple[str, ...]) -> None:
        room = await self._load(room_id)
        if room is None:
            return
        await self.bus.put(_speaking_key(room_id), {"participant_ids": list(speakers)})
        event = {"type": "room.speaking", "room_id": room_id, "participant_ids": list(speakers)}
        await self._publish(room, event)

    async def _publish(self, room: Room, event: dict[str, Any]) -> None:
        for user in sorted(room.users()):
            await self.bus.publish(f"user:{user}", event)

    def _lock(self, room_id: str) -> asyncio.Lock:
        return self._locks.setdefault(room_id, asyncio.Lock())

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("room task failed", exc_info=task.exception())


async def _close(leg: Any) -> None:
    result = leg.close()
    if inspect.isawaitable(result):
        await result


def _may_have(actor: Actor, info: RecordingInfo) -> bool:
    return actor.admin or (actor.user_id is not None and info.moderator_id == actor.user_id)


def _read(path: Path, offset: int, size: int) -> bytes:
    with open(path, "rb") as file:
        file.seek(offset)
        return file.read(size)


def _participant_event(kind: str, room: Room, participant: Participant) -> dict[str, Any]:
    return {
        "type": kind,
        "room_id": room.room_id,
        "participant_id": participant.participant_id,
        "display": participant.display,
        "kind": participant.kind,
        "muted": participant.muted,
    }


def _left(room: Room, participant: Participant, reason: str) -> dict[str, Any]:
    event = _participant_event("room.participant_left", room, participant)
    event["reason"] = reason
    return event


def _muted_event(room: Room, participant: Participant) -> dict[str, Any]:
    event = _participant_event("room.participant_muted", room, participant)
    event["muted_by_moderator"] = participant.muted_by_moderator
    return event
