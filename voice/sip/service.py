"""SIP calling: the front on the public port, the worker pool, and the routing of inbound
INVITEs: `sip:<username>@host` rings that user's devices, `sip:<hotline number>@` reaches the
hotline, `sip:room-<id>@` joins a room (after the PIN, typed on the keypad, when it has one)."""

from __future__ import annotations

import asyncio
import logging
import socket
from dataclasses import dataclass
from typing import Any

from voice.calls.controller import CallController
from voice.errors import BadRequest, ChorusError, NotFound, Unavailable
from voice.ports import RoomDoor
from voice.sip.front import Dial, Route, SipFront
from voice.sip.leg import SipLeg
from voice.sip.message import (
    Refusal,
    SipError,
    SipMessage,
    SipUri,
    parse_name_addr,
    parse_uri,
)
from voice.sip.pool import SipPool, WorkerConfig, WorkerHandle
from voice.sip.registrar import Binding, Registrar
from voice.sip.trunk_register import TrunkRegistration
from voice.sip.trunks import Trunk, number_of, pick

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
    guests: bool = True  # unauthenticated callers may reach rooms and hotlines
    pin_tries: int = 3  # PINs a SIP caller may type in one call before being hung up on
    pin_timeout_s: float = 15.0  # for the first key, and between keys


FIRST_DIAL_KEY = 60001
TRUNK_CHANGES = "sip-trunks"  # bus channel: a trunk was stored or deleted by some node


class SipService:
    def __init__(
        self,
        config: SipConfig,
        calls: CallController,
        rooms: RoomDoor | None = None,
        registrar: Registrar | None = None,
    ) -> None:
        self.config = config
        self.calls = calls
        self.rooms = rooms
        self.registrar = registrar
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
        self.front.on_dtmf = self._info_dtmf
        self.front.on_dial = self._dial_for
        self.front.registrar = registrar.register if registrar is not None else None
        self._dials: dict[tuple[int, int], tuple[Dial, SipLeg]] = {}
        self.trunks: dict[str, Trunk] = {}
        self.registrations: dict[str, TrunkRegistration] = {}
        self._trunk_addresses: dict[str, tuple[str, int]] = {}
        self._next_dial = FIRST_DIAL_KEY
        self.legs: set[SipLeg] = set()
        self._tasks: set[asyncio.Task[Any]] = set()

    @property
    def port(self) -> int:
        return self.front.port

    async def start(self) -> None:
        await self.front.listen(self.config.host, self.config.port)
        self.pool.config.front_port = self.front.port
        await self.pool.start()
        await self.load_trunks()
        changes = await self.calls.bus.subscribe(TRUNK_CHANGES)
        self._spawn(self._follow_trunk_changes(changes))
        log.info(
            "SIP on udp:%s:%d (%d worker(s) ready)",
            self.config.host,
            self.port,
            len(self.pool.workers),
        )

    async def stop(self) -> None:
        for registration in list(self.registrations.values()):
            await registration.stop()
        self.front.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.pool.close()

    # -- trunks --------------------------------------------------------------------------------

    async def trunk_changed(self, name: str) -> None:
        """A trunk was stored or deleted (through the API of any node): apply it here and
        tell the other nodes."""
        await self._reload_trunk(name)
        await self.calls.bus.publish(TRUNK_CHANGES, {"name": name, "node": self.calls.node})

    async def _follow_trunk_changes(self, changes: Any) -> None:
        try:
            async for change in changes:
                if change.get("node") == self.calls.node:
                    continue
                try:
                    await self._reload_trunk(str(change.get("name", "")))
                except ChorusError as exc:  # the store is down: the next change reloads
                    log.warning("trunk %s not reloaded: %s", change.get("name"), exc.message)
        finally:
            await changes.close()

    async def _reload_trunk(self, name: str) -> None:
        config = (await self.calls.store.trunks()).get(name)
        if config is None:
            await self.remove_trunk(name)
        else:
            await self.apply_trunk(Trunk.from_json(config))

    async def load_trunks(self) -> None:
        for config in (await self.calls.store.trunks()).values():
            await self.apply_trunk(Trunk.from_json(config))

    async def apply_trunk(self, trunk: Trunk) -> None:
        """Use `trunk` from now on (new or changed): resolve it, (re)start its registration."""
        await self.remove_trunk(trunk.name)
        self.trunks[trunk.name] = trunk
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(
                trunk.host, trunk.port, family=socket.AF_INET, type=socket.SOCK_DGRAM
            )
            self._trunk_addresses[trunk.name] = infos[0][4][:2]
        except OSError as exc:
            log.warning("trunk %s: cannot resolve %s (%s)", trunk.name, trunk.host, exc)
        if trunk.register and trunk.username:
            here = f"{self.config.public_host}:{self.port}"
            registration = TrunkRegistration(trunk, send=self.front.send, contact=here, via=here)
            self.front.own_requests[registration.call_id] = registration.response
            self.registrations[trunk.name] = registration
            registration.start()

    async def remove_trunk(self, name: str) -> None:
        self.trunks.pop(name, None)
        self._trunk_addresses.pop(name, None)
        registration = self.registrations.pop(name, None)
        if registration is not None:
            await registration.stop()
            self.front.own_requests.pop(registration.call_id, None)

    def trunk_status(self, name: str) -> str:
        registration = self.registrations.get(name)
        if registration is not None:
            return registration.status
        return "ready" if name in self._trunk_addresses else "unresolved"

    def _trunk_from(self, source: tuple[str, int]) -> Trunk | None:
        for name, address in self._trunk_addresses.items():
            if address == source:  # the carrier's proxy, sending from its SIP port
                return self.trunks.get(name)
        return None

    # -- calling out ---------------------------------------------------------------------------

    def dials(self, destination: str) -> bool:
        """SIP addresses, and numbers (`tel:...` or `+...`: a bare `1234` may be a username)
        when a trunk carries them."""
        if destination.startswith("sip:"):
            return True
        if not destination.startswith(("tel:", "+")):
            return False
        number = number_of(destination)
        return number is not None and pick(list(self.trunks.values()), number) is not None

    async def _dial_number(
        self, number: str, *, caller: str, display: str | None, label: str
    ) -> SipLeg:
        trunk = pick(list(self.trunks.values()), number)
        if trunk is None:
            raise NotFound(f"no trunk carries {number}", code="no_route")
        uri = parse_uri(f"sip:{number}@{trunk.host}:{trunk.port}", allow_headers=False)
        user = await self.calls.store.user_by_username(caller)
        caller_id = trunk.caller_id or (user.phone if user and user.phone else None)
        shown = _shown(display or caller)
        from_ = f'"{shown}" <sip:{caller_id or trunk.username or caller}@{trunk.host}>'
        auth = {"username": trunk.username, "password": trunk.password} if trunk.username else None
        address = self._trunk_addresses.get(trunk.name)
        return await self._dial(uri, from_, label, address, auth)

    async def dial(
        self, destination: str, *, caller: str, display: str | None, label: str
    ) -> SipLeg:
        """An app user calls a SIP address (or a number, through a trunk): a worker dials it
        through the front."""
        number = number_of(destination) if destination.startswith(("tel:", "+")) else None
        if number is not None:
            return await self._dial_number(number, caller=caller, display=display, label=label)
        try:
            uri = parse_uri(destination, allow_headers=False)
        except SipError as exc:
            raise BadRequest(f"not a SIP address: {exc.reason}", code="bad_address") from exc
        if not uri.is_sip or not uri.host or uri.scheme != "sip":
            raise BadRequest("call a sip:user@host address", code="bad_address")
        return await self._dial(uri, self._from(caller, display), label)

    async def phones(self, user_id: str) -> dict[str, Binding]:
        """The user's registered desk phones, by device id."""
        return {} if self.registrar is None else await self.registrar.phones(user_id)

    async def dial_phone(
        self, phone: Binding, *, caller: str, display: str | None, label: str
    ) -> SipLeg:
        """Ring a registered phone, at the address its REGISTER came from."""
        return await self._dial(phone.contact, self._from(caller, display), label, phone.address)

    def _from(self, caller: str, display: str | None) -> str:
        """A From for `caller` (an app username, or the URI of a SIP caller)."""
        shown = _shown(display or caller)
        if caller.startswith("sip:"):
            return f'"{shown}" <{caller}>'
        return f'"{shown}" <sip:{caller}@{self.config.public_host}:{self.port}>'

    async def _dial(
        self,
        uri: SipUri,
        from_: str,
        label: str,
        address: tuple[str, int] | None = None,
        auth: dict[str, str] | None = None,
    ) -> SipLeg:
        worker = await self.pool.reserve()
        if worker is None:
            raise Unavailable("every SIP line is busy, try again shortly", code="sip_busy")
        self.pool.unreserve(worker)  # the dial takes the slot now
        key = self._dial_key(worker)
        leg = SipLeg(worker, key, "", label, on_released=self._released, outbound=True)
        worker.calls[key] = leg
        self.legs.add(leg)
        self._dials[(worker.index, key)] = (Dial(uri, from_, ("outbound", key), address), leg)
        worker.send_json({"t": "dial", "k": key, "uri": str(uri), "auth": auth})
        return leg

    def _dial_key(self, worker: WorkerHandle) -> int:
        """Keys of dialled calls stay above the worker's own (1-60000) and fit 16 bits."""
        while True:
            key = self._next_dial
            self._next_dial = key + 1 if key < 65535 else FIRST_DIAL_KEY
            if key not in worker.calls:
                return key

    def _dial_for(self, worker: WorkerHandle, key: int, sip_call_id: str) -> Dial | None:
        found = self._dials.pop((worker.index, key), None)
        if found is None:
            return None
        dial, leg = found
        leg.sip_call_id = sip_call_id
        return dial

    # -- routing a new INVITE (in the front, before any worker sees it) ------------------------

    async def _route(self, message: SipMessage, source: tuple[str, int]) -> Route | Refusal:
        """Where a new INVITE goes. Rooms and hotlines take anyone (unless `guests` is off);
        users only take calls from users: a registered phone, or a phone whose user's SIP
        credentials answer our 407 challenge (the caller is then that user)."""
        uri = message.uri
        assert uri is not None
        user = uri.user_unescaped or ""
        if not user:
            return Refusal(404, "Not Found")
        desk = self.calls.desk
        service = user.startswith("room-") or (
            user.isdigit() and desk is not None and desk.handles(f"hotline:{user}")
        )
        trunk = self._trunk_from(source)
        if trunk is not None:
            return await self._route_from_trunk(trunk, user)
        caller: str | None = None
        if not service or not self.config.guests:
            if self.registrar is None:
                return Refusal(403, "Forbidden")
            who = await self.registrar.caller(message, source)
            if not isinstance(who, str):
                status, reason, headers = who
                return Refusal(status, reason or "", headers)
            caller = who
        if user.startswith("room-"):
            room_id = user[len("room-") :]
            if self.rooms is None or await self.rooms.pin_needed(room_id) is None:
                return Refusal(404, "Not Found")
            elsewhere = await self.rooms.mixed_at(room_id)
            if elsewhere is not None:
                # The room's media are on another node: the caller goes there (RFC 3261
                # 8.1.3.4; a redirected phone calls the Contact, and that node's door).
                contact = (("Contact", f"<sip:room-{room_id}@{elsewhere}>"),)
                return Refusal(302, "Moved Temporarily", contact)
            return Route(("room", room_id, caller))
        if service and desk is not None:
            try:
                await desk.check(f"hotline:{user}")
            except ChorusError:
                return Refusal(404, "Not Found")
            return Route(("service", f"hotline:{user}", caller))
        if await self.calls.store.user_by_username(user) is None:
            return Refusal(404, "Not Found")
        return Route(("user", user, caller))

    async def _route_from_trunk(self, trunk: Trunk, dialled: str) -> Route | Refusal:
        """A call the carrier sends us: to the user whose phone number was dialled, the
        hotline of that number, or the trunk's `inbound_to`."""
        number = number_of(dialled)
        if number is not None:
            user = await self.calls.store.user_by_phone(number)
            if user is not None:
                return Route(("user", user.username, None))
            desk = self.calls.desk
            if desk is not None and desk.handles(f"hotline:{number}"):
                return Route(("service", f"hotline:{number}", None))
        target = trunk.inbound_to
        if not target:
            return Refusal(404, "Not Found")
        if target.startswith("hotline:"):
            return Route(("service", target, None))
        if target.startswith("room-"):
            return Route(("room", target[len("room-") :], None))
        return Route(("user", target, None))

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
        kind, target, caller_id = dialog.target
        if kind == "room":
            leg.answer()
            display = _display_name(str(message.get("from", ""))) or caller.removeprefix("sip:")
            self._spawn(self._enter_room(leg, caller, target, display))
            return
        if kind == "user":
            leg.ring(early_media=True)
        self._spawn(self._place(leg, caller, kind, target, caller_id))

    async def _enter_room(self, leg: SipLeg, caller: str, room_id: str, display: str) -> None:
        """The door of a room: the PIN (up to `pin_tries`), then the room's mix."""
        assert self.rooms is not None
        keys: asyncio.Queue[str] = asyncio.Queue()
        leg.on_dtmf = keys.put_nowait
        try:
            needs_pin = await self.rooms.pin_needed(room_id)
            pin: str | None = None
            for attempt in range(self.config.pin_tries):
                if needs_pin:
                    leg.play(await self.rooms.prompt("bad_pin" if attempt else "pin"), loop=False)
                    pin = await _read_pin(keys, self.config.pin_timeout_s)
                    if pin is None:
                        break  # nothing typed: the caller gave up
                try:
                    await self.rooms.join_sip(room_id, leg, caller=caller, pin=pin, display=display)
                except ChorusError as exc:
                    log.info("SIP caller refused at room=%s: %s", room_id, exc.code)
                    if exc.code == "bad_pin":
                        continue
                    break
                leg.on_dtmf = None
                return
            await self._say_and_hang_up(leg, await self.rooms.prompt("refused"))
        except Exception:
            log.exception("room=%s: a SIP caller could not join", room_id)
            await leg.close()

    async def _say_and_hang_up(self, leg: SipLeg, clip: Any) -> None:
        leg.on_dtmf = None
        leg.play(clip, loop=False)
        await asyncio.sleep(clip.duration_s + 0.3)
        await leg.close()

    async def _place(
        self, leg: SipLeg, caller: str, kind: str, target: str, caller_id: str | None
    ) -> None:
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
            user = await self.calls.store.user_by_id(caller_id) if caller_id else None
            live = await self.calls.place_inbound(caller, target, leg, caller_user=user)
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

    def _info_dtmf(self, sip_call_id: str, key: str) -> None:
        for leg in self.legs:
            if leg.sip_call_id == sip_call_id:
                leg.dtmf_from_worker(key)
                return

    def _released(self, leg: SipLeg) -> None:
        self.legs.discard(leg)
        self._dials.pop((leg.worker.index, leg.key), None)
        self.front.forget_later(leg.sip_call_id)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


async def _read_pin(keys: asyncio.Queue[str], timeout_s: float) -> str | None:
    """Digits up to `#` (or a pause of `timeout_s` after some digits); None if nothing came.
    Keys pressed during the prompt count (barge-in), `*` starts over."""
    digits = ""
    while True:
        try:
            key = await asyncio.wait_for(keys.get(), timeout_s)
        except TimeoutError:
            return digits or None
        if key == "#":
            return digits
        if key == "*":
            digits = ""
        elif key.isdigit() and len(digits) < 32:
            digits += key


def _display_name(from_header: str) -> str:
    try:
        return (parse_name_addr(from_header).display or "").strip('"')
    except SipError:
        return ""


def _shown(name: str) -> str:
    """A display name safe inside the quotes of a From header."""
    return "".join(c for c in name if c.isprintable() and c not in '"\\')[:64]
