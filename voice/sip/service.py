"""SIP calling: the front on the public port, the worker pool, and the routing of inbound
INVITEs into the call service (`sip:<username>@host` rings that user's devices)."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from voice.calls.controller import CallController
from voice.errors import ChorusError
from voice.sip.front import Route, SipFront
from voice.sip.leg import SipLeg
from voice.sip.message import Refusal, SipError, SipMessage, parse_name_addr
from voice.sip.pool import SipPool, WorkerConfig, WorkerHandle

log = logging.getLogger("chorus.sip")


@dataclass(frozen=True)
class SipConfig:
    host: str  # where the front listens
    port: int  # 0: any free port (tests)
    public_host: str  # in Record-Route, SDP and Contact
    media_host: str
    rtp_port_min: int
    rtp_port_max: int
    max_workers: int = 32
    spare_calls: int = 4
    bitrate: int = 32000
    rate_per_source: float = 50.0


class SipService:
    def __init__(self, config: SipConfig, calls: CallController) -> None:
        self.config = config
        self.calls = calls
        self.pool = SipPool(
            WorkerConfig(
                sip_host="127.0.0.1",
                media_host=config.media_host,
                public_host=config.public_host,
                rtp_port_min=config.rtp_port_min,
                rtp_port_max=config.rtp_port_max,
                bitrate=config.bitrate,
                log_level=logging.getLevelName(logging.getLogger("chorus").getEffectiveLevel()),
            ),
            max_workers=config.max_workers,
            spare_slots=config.spare_calls,
            on_incoming=self._incoming,
        )
        self.front = SipFront(
            pool=self.pool,
            router=self._route,
            public_host=config.public_host,
            internal_host="127.0.0.1",
            rate=config.rate_per_source,
            burst=config.rate_per_source * 4,
        )
        self.legs: set[SipLeg] = set()
        self._tasks: set[asyncio.Task[Any]] = set()

    @property
    def port(self) -> int:
        return self.front.port

    async def start(self) -> None:
        await self.front.listen(self.config.host, self.config.port)
        await self.pool.start()
        log.info(
            "SIP on udp:%s:%d (%d worker(s) ready)",
            self.config.host,
            self.port,
            len(self.pool.workers),
        )

    async def stop(self) -> None:
        self.front.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.pool.close()

    # -- routing a new INVITE (in the front, before any worker sees it) ------------------------

    async def _route(self, message: SipMessage, source: tuple[str, int]) -> Route | Refusal:
        uri = message.uri
        assert uri is not None
        user = uri.user_unescaped or ""
        if not user:
            return Refusal(404, "Not Found")
        if user.startswith("room-"):
            return Refusal(404, "Rooms Are Not Reachable By SIP Yet")
        desk = self.calls.desk
        if user.isdigit() and desk is not None and desk.handles(f"hotline:{user}"):
            try:
                await desk.check(f"hotline:{user}")
            except ChorusError:
                return Refusal(404, "Not Found")
            return Route(("service", f"hotline:{user}"))
        if await self.calls.store.user_by_username(user) is None:
            return Refusal(404, "Not Found")
        return Route(("user", user))

    # -- a worker took the INVITE ------------------------------------------------------------

    def _incoming(self, worker: WorkerHandle, key: int, message: dict[str, Any]) -> None:
        sip_call_id = str(message.get("call_id", ""))
        dialog = self.front.dialogs.get(sip_call_id)
        leg = SipLeg(
            worker, key, sip_call_id, f"sip-{key}@w{worker.index}", on_released=self._released
        )
        worker.calls[key] = leg
        self.legs.add(leg)
        if dialog is None:
            leg.reject(404, "Not Found")  # reached a worker without being routed
            return
        try:
            caller = str(parse_name_addr(str(message.get("from", ""))).uri)
        except SipError:
            caller = "sip:anonymous@anonymous.invalid"
        caller = caller.split(";")[0]
        kind, target = dialog.target
        if kind == "user":
            leg.ring(early_media=True)
        self._spawn(self._place(leg, caller, kind, target))

    async def _place(self, leg: SipLeg, caller: str, kind: str, target: str) -> None:
        end_reason: dict[str, str | None] = {}

        async def reason() -> str | None:
            call_id = end_reason.get("call_id")
            if call_id is None:
                return None
            info = await self.calls.store.call(call_id)
            return info.reason if info is not None else None

        leg.end_reason = reason
        try:
            if kind == "service":
                leg.answer()  # the service answers at once; its prompts follow
            live = await self.calls.place_inbound(caller, target, leg)
        except ChorusError as exc:
            leg.reject(404 if exc.status == 404 else 480, exc.message[:60])
            return
        except Exception:
            log.exception("placing a SIP call failed")
            leg.reject(500)
            return
        call_id = live.call.call_id
        end_reason["call_id"] = call_id
        leg.on_dtmf = lambda digit: self._spawn(self.calls.inbound_dtmf(call_id, digit))

    def _released(self, leg: SipLeg) -> None:
        self.legs.discard(leg)
        self.front.forget_later(leg.sip_call_id)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
