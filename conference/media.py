"""Where a room's media runs, as the rooms service drives it: `LocalMedia` mixes in this
process (the engine, its RTP ports, recorders), `WorkerMedia` in media worker processes (a
room lives in one worker with its participants' WebRTC and RTP legs; see `conference.hosted`).

The service speaks to either through the same few calls: make a participant's leg for a room,
open and close the room's mix, attach and detach a participant, mute, figures for /metrics.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from conference.engine import EngineConfig, RoomEngine
from conference.recording import RecordingInfo, RecordingStore, RoomRecorder
from voice.workers import MediaWorkers, RemoteLeg, WorkerLink
from voice.workers.wire import Ref

log = logging.getLogger("chorus.rooms")

Reading = tuple[str, str, str, float]
SpeakingHandler = Callable[[str, tuple[str, ...]], None]
WebRtcLegFactory = Callable[[str, str], Awaitable[Any]]  # (offer SDP, label) -> leg


class RtpPortsLike(Protocol):
    host: str

    def open(self, **kwargs: Any) -> Any: ...

    def poll(self, now: float) -> None: ...

    def close(self) -> None: ...


class LocalMedia:
    """Rooms mixed by this process's engine, on its own 20 ms clock."""

    def __init__(
        self,
        *,
        webrtc: WebRtcLegFactory,
        rtp: RtpPortsLike,
        recordings: RecordingStore,
        engine: EngineConfig | None,
    ) -> None:
        self.rtp = rtp
        self.rtp_host = rtp.host
        self.recordings = recordings
        self.on_speaking: SpeakingHandler | None = None  # set by the rooms service
        self.on_lost: Callable[[list[str]], None] | None = None  # never called: no worker
        self._webrtc = webrtc
        self.engine = RoomEngine(
            engine, on_speaking=self._speaking, before_tick=[rtp.poll], autostart=True
        )
        self._recorders: dict[str, RoomRecorder] = {}

    def _speaking(self, room_id: str, speakers: tuple[str, ...]) -> None:
        if self.on_speaking is not None:
            self.on_speaking(room_id, speakers)

    async def webrtc_leg(self, room_id: str, offer_sdp: str, label: str) -> Any:
        return await self._webrtc(offer_sdp, label)

    async def rtp_leg(self, room_id: str, **kwargs: Any) -> Any:
        return self.rtp.open(**kwargs)

    def is_open(self, room_id: str) -> bool:
        return self.engine.room(room_id) is not None

    def is_empty(self, room_id: str) -> bool:
        room = self.engine.room(room_id)
        return room is None or not room.channels

    async def open_room(
        self,
        room_id: str,
        max_speakers: int | None,
        recording: RecordingInfo | None,
        near: Any = None,
    ) -> None:
        recorder = None
        if recording is not None:
            config = self.engine.config
            recorder = RoomRecorder(
                self.recordings.directory(room_id),
                recording,
                bitrate=config.bitrate,
                complexity=config.complexity,
            )
            self._recorders[room_id] = recorder
        self.engine.open_room(room_id, max_speakers, recorder)

    async def close_room(self, room_id: str) -> None:
        self.engine.close_room(room_id)
        recorder = self._recorders.pop(room_id, None)
        if recorder is not None:
            await recorder.close()

    def open_rooms(self) -> set[str]:
        return set(self.engine.room_ids)

    async def attach(self, room_id: str, pid: str, codec: str, leg: Any, muted: bool) -> None:
        channel = self.engine.add(room_id, pid, codec, leg, muted=muted)
        leg.on_packet = channel.push

    async def detach(self, room_id: str, pid: str, leg: Any) -> None:
        self.engine.remove(room_id, pid)
        if leg is not None:
            leg.on_packet = None
            await _close(leg)

    def set_muted(self, room_id: str, pid: str, muted: bool) -> None:
        self.engine.set_muted(room_id, pid, muted)

    def readings(self) -> list[Reading]:
        return self.engine.readings()

    async def stop(self) -> None:
        self.engine.stop()
        self.rtp.close()


class WorkerRtpLeg:
    """A plain-RTP participant's leg living in a worker's rooms host."""

    def __init__(self, link: WorkerLink, rooms_id: int, key: int, local_port: int) -> None:
        self.link, self.key, self.local_port = link, key, local_port
        self._rooms_id = rooms_id
        self._closed = False
        link.held += 1  # counted in the worker's load, as a WebRTC leg is

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.link.held -= 1
        if self.link.alive:
            self.link.tell(self._rooms_id, "close_rtp", self.key)


class WorkerMedia:
    """Rooms mixed in media worker processes: each room in one worker (placed when its
    first leg is made, on the least-loaded worker), with every WebRTC and RTP leg of its
    participants. A participant whose leg lives in this process (a SIP caller) is joined
    through it: its packets go to the worker, its mix comes back.

    When a worker dies, `on_lost(room_ids)` hears which rooms died with it."""

    def __init__(
        self,
        workers: MediaWorkers,
        *,
        recordings: RecordingStore,
        rtp_host: str,
    ) -> None:
        self.workers = workers
        self.recordings = recordings
        self.rtp_host = rtp_host
        self.on_speaking: SpeakingHandler | None = None  # set by the rooms service
        self.on_lost: Callable[[list[str]], None] | None = None
        # The rooms host object of each worker (its id, once the worker made it).
        self._hosts: dict[WorkerLink, asyncio.Future[tuple[int, Any]]] = {}
        self._placed: dict[str, WorkerLink] = {}
        self._open: set[str] = set()
        self._members: dict[str, set[str]] = {}
        self._local_legs: dict[tuple[str, str], Any] = {}  # participants whose leg is here
        self._readings: dict[WorkerLink, list[Reading]] = {}

    async def _place(self, room_id: str) -> tuple[WorkerLink, int]:
        link = self._placed.get(room_id)
        if link is None or not link.alive:
            link = self.workers.pick()
            self._placed[room_id] = link
        made = self._hosts.get(link)
        if made is None:  # one rooms host per worker, however many joins arrive at once
            made = asyncio.ensure_future(
                link.new("rooms", lambda name, args: self._event(link, name, args))
            )
            self._hosts[link] = made
        try:
            host, _ = await asyncio.shield(made)
        except Exception:
            if self._hosts.get(link) is made:
                del self._hosts[link]
            raise
        return link, host

    async def webrtc_leg(self, room_id: str, offer_sdp: str, label: str) -> RemoteLeg:
        link, _ = await self._place(room_id)
        return await RemoteLeg.open(link, "room_leg", offer_sdp, label)

    async def rtp_leg(self, room_id: str, **kwargs: Any) -> WorkerRtpLeg:
        link, host = await self._place(room_id)
        key, port = await link.call(host, "open_rtp", **kwargs)
        return WorkerRtpLeg(link, host, key, port)

    def is_open(self, room_id: str) -> bool:
        return room_id in self._open

    def is_empty(self, room_id: str) -> bool:
        return not self._members.get(room_id)

    async def open_room(
        self,
        room_id: str,
        max_speakers: int | None,
        recording: RecordingInfo | None,
        near: Any = None,
    ) -> None:
        """`near`: the leg about to join, made while the room was not open (it may have
        emptied meanwhile): the room opens in that leg's worker."""
        if isinstance(near, (RemoteLeg, WorkerRtpLeg)) and near.link.alive:
            self._placed[room_id] = near.link
        link, host = await self._place(room_id)
        directory = str(self.recordings.directory(room_id)) if recording is not None else None
        await link.call(host, "open_room", room_id, max_speakers, recording, directory)
        self._open.add(room_id)
        self._members[room_id] = set()

    async def close_room(self, room_id: str) -> None:
        self._open.discard(room_id)
        self._members.pop(room_id, None)
        link = self._placed.pop(room_id, None)
        host = self._host_id(link)
        if host is not None:
            try:
                await link.call(host, "close_room", room_id)
            except Exception as exc:
                log.warning("room=%s media not closed cleanly: %s", room_id, exc)

    def open_rooms(self) -> set[str]:
        return set(self._open)

    async def attach(self, room_id: str, pid: str, codec: str, leg: Any, muted: bool) -> None:
        link, host = await self._place(room_id)
        if isinstance(leg, RemoteLeg) and leg.link is link:
            link.tell(host, "attach_leg", room_id, pid, codec, Ref(leg.obj_id), muted)
        elif isinstance(leg, WorkerRtpLeg) and leg.link is link:
            link.tell(host, "attach_rtp", room_id, pid, codec, leg.key, muted)
        else:
            link.tell(host, "attach_here", room_id, pid, codec, muted)
            self._local_legs[(room_id, pid)] = leg
            leg.on_packet = lambda *packet: link.tell(host, "push", room_id, pid, *packet)
        self._members.setdefault(room_id, set()).add(pid)

    async def detach(self, room_id: str, pid: str, leg: Any) -> None:
        members = self._members.get(room_id)
        if members is not None:
            members.discard(pid)
        link = self._placed.get(room_id)
        host = self._host_id(link)
        if host is not None:
            link.tell(host, "detach", room_id, pid)
        self._local_legs.pop((room_id, pid), None)
        if leg is not None:
            if not isinstance(leg, (RemoteLeg, WorkerRtpLeg)):
                leg.on_packet = None
            await _close(leg)

    def set_muted(self, room_id: str, pid: str, muted: bool) -> None:
        link = self._placed.get(room_id)
        host = self._host_id(link)
        if host is not None:
            link.tell(host, "set_muted", room_id, pid, muted)

    def _host_id(self, link: WorkerLink | None) -> int | None:
        """The rooms host of `link`'s worker, if the worker is alive and has made it."""
        made = self._hosts.get(link) if link is not None and link.alive else None
        if made is None or not made.done() or made.cancelled() or made.exception():
            return None
        return made.result()[0]

    def _event(self, link: WorkerLink, name: str, args: tuple[Any, ...]) -> None:
        if name == "frame":  # the mix for a participant whose leg is in this process
            room_id, pid, payload, tick = args
            leg = self._local_legs.get((room_id, pid))
            if leg is not None:
                leg.send_frame(payload, tick)
        elif name == "speaking":
            if self.on_speaking is not None:
                self.on_speaking(*args)
        elif name == "readings":
            self._readings[link] = args[0]
        elif name == "lost":
            self._hosts.pop(link, None)
            self._readings.pop(link, None)
            lost = [room_id for room_id, placed in self._placed.items() if placed is link]
            for room_id in lost:
                self._placed.pop(room_id, None)
                self._open.discard(room_id)
                self._members.pop(room_id, None)
            if lost and self.on_lost is not None:
                self.on_lost(lost)

    def readings(self) -> list[Reading]:
        """Every worker's engine figures, summed (the longest tick: the longest of all)."""
        total: dict[str, list[Any]] = {}
        for readings in list(self._readings.values()):
            for name, doc, kind, value in readings:
                if name not in total:
                    total[name] = [doc, kind, value]
                elif name.endswith("_max_seconds"):
                    total[name][2] = max(total[name][2], value)
                else:
                    total[name][2] += value
        workers = self.workers.links
        return [
            *((name, doc, kind, value) for name, (doc, kind, value) in total.items()),
            ("chorus_media_workers", "Media worker processes running", "gauge",
             sum(link.alive for link in workers)),
            ("chorus_media_worker_restarts", "Media workers replaced after dying", "counter",
             self.workers.restarts),
        ]  # fmt: skip

    async def stop(self) -> None:
        pass  # the workers are closed by whoever started them (the runtime)


async def _close(leg: Any) -> None:
    result = leg.close()
    if inspect.isawaitable(result):
        await result
