"""The rooms of one media worker (the worker side of `conference.media.WorkerMedia`): its
engine on the worker's own 20 ms clock, its plain-RTP legs, its recorders.

A participant's leg is a WebRTC leg of this worker (`attach_leg`), an RTP leg opened here
(`attach_rtp`), or a leg of the API process (`attach_here`: a SIP caller), whose packets
arrive as `push` messages and whose mix goes back as "frame" events.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from pathlib import Path
from typing import Any

from conference.engine import EngineConfig, RoomEngine
from conference.recording import RecordingInfo, RoomRecorder
from voice.rtp import RtpPorts
from voice.workers.host import Host

READINGS_EVERY_S = 1.0


class _ParentSink:
    def __init__(self, host: Host, obj_id: int, room_id: str, pid: str) -> None:
        self._emit, self._id, self._where = host.emit, obj_id, (room_id, pid)

    def send_frame(self, payload: bytes, tick: int) -> None:
        self._emit(self._id, "frame", *self._where, payload, tick)


class RoomsHost:
    def __init__(self, host: Host, obj_id: int, config: EngineConfig, rtp: RtpPorts) -> None:
        self._host, self._id = host, obj_id
        self.rtp = rtp
        self.engine = RoomEngine(
            config,
            on_speaking=lambda room_id, speakers: host.emit(obj_id, "speaking", room_id, speakers),
            before_tick=[rtp.poll],
            autostart=True,
        )
        self._rtp_legs: dict[int, Any] = {}
        self._keys = itertools.count(1)
        self._attached: dict[tuple[str, str], Any] = {}  # legs whose on_packet feeds a channel
        self._pushers: dict[tuple[str, str], Any] = {}  # channels fed from the API process
        self._recorders: dict[str, RoomRecorder] = {}
        self._report = asyncio.get_running_loop().create_task(self._report_readings())

    def open_rtp(self, **kwargs: Any) -> tuple[int, int]:
        leg = self.rtp.open(**kwargs)
        key = next(self._keys)
        self._rtp_legs[key] = leg
        return key, leg.local_port

    def close_rtp(self, key: int) -> None:
        leg = self._rtp_legs.pop(key, None)
        if leg is not None:
            leg.close()

    def open_room(
        self,
        room_id: str,
        max_speakers: int | None,
        recording: RecordingInfo | None,
        directory: str | None,
    ) -> None:
        recorder = None
        if recording is not None and directory is not None:
            config = self.engine.config
            recorder = RoomRecorder(
                Path(directory), recording, bitrate=config.bitrate, complexity=config.complexity
            )
            self._recorders[room_id] = recorder
        self.engine.open_room(room_id, max_speakers, recorder)

    async def close_room(self, room_id: str) -> None:
        for key in [key for key in self._attached if key[0] == room_id]:
            self.detach(*key)
        self.engine.close_room(room_id)
        recorder = self._recorders.pop(room_id, None)
        if recorder is not None:
            await recorder.close()

    def attach_leg(self, room_id: str, pid: str, codec: str, hosted: Any, muted: bool) -> None:
        if hosted is not None:  # None: the leg was closed meanwhile
            self._feed(room_id, pid, codec, hosted.leg, muted)

    def attach_rtp(self, room_id: str, pid: str, codec: str, key: int, muted: bool) -> None:
        leg = self._rtp_legs.get(key)
        if leg is not None:
            self._feed(room_id, pid, codec, leg, muted)

    def _feed(self, room_id: str, pid: str, codec: str, leg: Any, muted: bool) -> None:
        channel = self.engine.add(room_id, pid, codec, leg, muted=muted)
        leg.on_packet = channel.push
        self._attached[(room_id, pid)] = leg

    def attach_here(self, room_id: str, pid: str, codec: str, muted: bool) -> None:
        sink = _ParentSink(self._host, self._id, room_id, pid)
        channel = self.engine.add(room_id, pid, codec, sink, muted=muted)
        self._pushers[(room_id, pid)] = channel.push

    def push(self, room_id: str, pid: str, *packet: Any) -> None:
        push = self._pushers.get((room_id, pid))
        if push is not None:
            push(*packet)

    def detach(self, room_id: str, pid: str) -> None:
        self.engine.remove(room_id, pid)
        self._pushers.pop((room_id, pid), None)
        leg = self._attached.pop((room_id, pid), None)
        if leg is not None:
            leg.on_packet = None

    def set_muted(self, room_id: str, pid: str, muted: bool) -> None:
        self.engine.set_muted(room_id, pid, muted)

    async def _report_readings(self) -> None:
        """Figures for the API process's /metrics, pushed once a second (a scrape must not
        wait for every worker)."""
        while True:
            self._host.emit(self._id, "readings", self.engine.readings())
            await asyncio.sleep(READINGS_EVERY_S)

    async def close(self) -> None:
        self._report.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._report
        for room_id in self.engine.room_ids:
            await self.close_room(room_id)
        self.engine.stop()
        self.rtp.close()
