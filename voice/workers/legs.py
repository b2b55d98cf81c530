"""A WebRTC leg living in a media worker, as the API process sees it: the same surface as
`voice.webrtc.WebRtcLeg` for the call controller, the hotline and the rooms service.

Two legs of one worker relay inside it (nothing crosses the process boundary); the controller
places a call's second leg next to its first, so that is the usual case. Two legs of two
workers are bridged over loopback RTP, worker to worker. A leg of another kind (a SIP leg, in
this process) is relayed through this process: the worker sends what its peer says up as
events and takes what it must send as messages.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from voice.media.opus import OpusClip
from voice.workers.pool import WorkerLink, WorkerLost
from voice.workers.wire import Ref

log = logging.getLogger("chorus.worker")


class RemoteLeg:
    def __init__(self, link: WorkerLink, label: str) -> None:
        self.link = link
        self.label = label
        self.obj_id = 0
        self.answer_sdp = ""
        self.on_closed: Callable[[str], None] | None = None
        self.on_dtmf: Callable[[str], None] | None = None
        self._on_audio: Callable[[bytes, int], None] | None = None
        self._on_tone_key: Callable[[str], None] | None = None
        self._relay_target: Any = None  # a leg of this process (or another worker)
        self._parent_source: Any = None  # the leg of this process relaying into this one
        self._bridged_from: RemoteLeg | None = None  # a leg of another worker sending here
        self._bridging: asyncio.Task[None] | None = None
        self._closing = False
        self._ended = False

    @classmethod
    async def open(cls, link: WorkerLink, kind: str, offer_sdp: str, label: str) -> RemoteLeg:
        """Answer `offer_sdp` with a new leg in `link`'s worker (BadSdp as in-process)."""
        leg = cls(link, label)
        leg.obj_id, leg.answer_sdp = await link.new(
            kind, leg._event, offer_sdp=offer_sdp, label=label
        )
        return leg

    # -- sending -------------------------------------------------------------------------

    def play(self, clip: OpusClip | None, *, loop: bool = True) -> None:
        if self._usable():
            self.link.tell(
                self.obj_id, "play", None if clip is None else self.link.clip(clip), loop=loop
            )

    def relay_to(self, other: Any) -> None:
        if other is not None and not hasattr(other, "receive_relayed"):
            raise TypeError(f"cannot relay to a {type(other).__name__}")
        if other is not None and (self._closing or getattr(other, "_closing", False)):
            return
        previous, self._relay_target = self._relay_target, None
        if previous is not None:
            if previous.relay_source is self:
                previous.accept_relay_source(None)
            if not isinstance(previous, RemoteLeg):
                self._tell("relay_to_parent", False)
        if other is None:
            self._tell("relay_to", None)
        elif isinstance(other, RemoteLeg) and other.link is self.link:
            self._tell("relay_to", Ref(other.obj_id))
        elif isinstance(other, RemoteLeg):
            self._relay_target = other
            self._tell("relay_to", None)  # until the bridge is up
            self._bridging = asyncio.get_running_loop().create_task(self._bridge(other))
        else:
            self._relay_target = other
            other.accept_relay_source(self)
            self._tell("relay_to_parent", True)

    async def _bridge(self, other: RemoteLeg) -> None:
        """Relay to a leg of another worker: it opens a loopback RTP port, this worker sends
        there what this leg's peer says."""
        try:
            port = await other.link.call(other.obj_id, "listen_bridge")
        except Exception as exc:
            log.warning("[%s] no bridge to %s: %s", self.label, other.label, exc)
            return
        if self._relay_target is other and not self._closing:
            other._bridged_from = self
            self._tell("relay_to_port", port)

    @property
    def relay_source(self) -> object | None:
        return self._parent_source or self._bridged_from

    def accept_relay_source(self, source: object | None) -> None:
        """A leg of this process is to be heard through this one (None: no longer; that
        also ends a bridge from another worker)."""
        if source is None and self._bridged_from is not None:
            self._bridged_from = None
            self._tell("stop_bridge")
        if isinstance(source, RemoteLeg):
            return  # a bridge, set up by `listen_bridge`
        self._parent_source = source
        self._tell("accept_parent_source", source is not None)

    def receive_relayed(self, source: object, payload: bytes, timestamp: int, ssrc: int) -> None:
        if source is self._parent_source and self._usable():
            self.link.tell(self.obj_id, "parent_relayed", payload, timestamp, ssrc)

    # -- receiving -----------------------------------------------------------------------

    @property
    def on_audio(self) -> Callable[[bytes, int], None] | None:
        return self._on_audio

    @on_audio.setter
    def on_audio(self, handler: Callable[[bytes, int], None] | None) -> None:
        """Every Opus payload the peer sends (costs a message each: set it only to listen)."""
        if (handler is None) != (self._on_audio is None):
            self._tell("forward_audio", handler is not None)
        self._on_audio = handler

    def detect_tone_keys(self, handler: Callable[[str], None] | None) -> None:
        """Keys sent as tones in the peer's audio (in-band DTMF) go to `handler`; the worker
        decodes and listens, so no packet comes here for it. None stops."""
        self._on_tone_key = handler
        self._tell("detect_tone_keys", handler is not None)

    def _event(self, name: str, args: tuple[Any, ...]) -> None:
        if name == "packet":
            target = self._relay_target
            if target is not None:
                target.receive_relayed(self, *args)
        elif name == "audio":
            if self._on_audio is not None:
                self._on_audio(*args)
        elif name == "dtmf":
            if self.on_dtmf is not None:
                self.on_dtmf(*args)
        elif name == "tone_key":
            if self._on_tone_key is not None:
                self._on_tone_key(*args)
        elif name == "closed":
            self._end(args[0])
        elif name == "lost":
            log.warning("[%s] its media worker was lost", self.label)
            self._end("failed")

    def _end(self, reason: str) -> None:
        if self._closing or self._ended:
            return
        self._ended = True
        log.info("[%s] connection %s", self.label, reason)
        self._detach()
        if self.on_closed is not None:
            self.on_closed(reason)

    # -- state ---------------------------------------------------------------------------

    async def wait_connected(self, timeout: float) -> bool:
        try:
            return bool(await self.link.call(self.obj_id, "wait_connected", timeout))
        except WorkerLost:
            return False

    async def stats(self) -> dict[str, Any]:
        return await self.link.call(self.obj_id, "stats")

    def _detach(self) -> None:
        self.relay_to(None)
        source = self._parent_source
        if source is not None and getattr(source, "_relay_target", None) is self:
            source._relay_target = None
        self._parent_source = None

    async def close(self) -> None:
        if self._closing:
            return
        self._detach()
        self._closing = True
        if self._bridging is not None:
            self._bridging.cancel()
        try:
            if self.link.alive:
                await self.link.call(self.obj_id, "close")
        except WorkerLost:
            pass
        finally:
            self.link.drop(self.obj_id)

    def _usable(self) -> bool:
        return not self._closing and not self._ended and self.link.alive

    def _tell(self, method: str, *args: Any) -> None:
        if not self._closing and self.link.alive:
            self.link.tell(self.obj_id, method, *args)
