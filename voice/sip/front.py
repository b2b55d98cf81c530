"""The SIP front: Chorus's public SIP port (UDP), a small record-routing proxy.

Every datagram is parsed here first (`voice.sip.message`): malformed ones get their 4xx (or
are dropped) and never reach pjsua2; a new INVITE is routed (does the user exist? is a
worker free?) before any worker sees it. Everything of a dialog then goes to the worker that
carries it, found by Call-ID; what the workers send goes back to the party's address. So one
SIP address serves the whole pool, and the 4-calls-per-process limit never shows.

Stateless in the RFC 3261 16.11 sense: our Via branch is a hash of the incoming one, so
retransmissions, CANCEL and non-2xx ACK reach the same worker transaction; the party and the
worker retransmit end to end. A few dicts (dialogs by Call-ID, rate buckets) are the only state.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from voice.errors import ChorusError
from voice.sip.message import (
    Refusal,
    SipError,
    SipMessage,
    SipUri,
    application_refusal,
    best_effort_response,
    info_dtmf,
    parse,
    response_to,
)
from voice.sip.pool import SipPool, WorkerHandle
from voice.sip.tcp import TcpSide

log = logging.getLogger("chorus.sip")

DIALOG_LINGER_S = 32.0  # keep routing retransmissions and late ACKs after a call ends
ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE"


@dataclass
class Route:
    """Where a new INVITE goes: `target` is what the router decided (e.g. a username)."""

    target: Any


Router = Callable[[SipMessage, tuple[str, int]], Awaitable["Route | Refusal"]]


@dataclass
class Dialog:
    worker: WorkerHandle
    peer: tuple[str, int]
    target: Any
    created: float = field(default_factory=time.monotonic)
    from_: str | None = None  # outbound: the caller's From, put on every request we pass out
    dial: Dial | None = None  # outbound: how it was dialled (a challenged INVITE comes again)


@dataclass(frozen=True)
class Dial:
    """What the front needs to send out a call a worker dialled."""

    uri: SipUri  # where it goes
    from_: str  # who calls, as a From value without tag: `"Alice" <sip:alice@host>`
    target: Any  # kept in the dialog (for the service)
    address: tuple[str, int] | None = None  # send there, not to the URI's host (a phone)


Registrar = Callable[
    [SipMessage, tuple[str, int]],
    Awaitable[tuple[int, str | None, tuple[tuple[str, str], ...]]],
]
DialLookup = Callable[[WorkerHandle, int, str], "Dial | None"]  # worker, key, Call-ID


class RateLimiter:
    """A token bucket per source address: `rate` messages a second, bursts of `burst`."""

    def __init__(self, rate: float, burst: float) -> None:
        self.rate, self.burst = rate, burst
        self._buckets: dict[str, tuple[float, float]] = {}

    def allow(self, host: str, now: float) -> bool:
        tokens, last = self._buckets.get(host, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        if tokens < 1:
            self._buckets[host] = (tokens, now)
            return False
        self._buckets[host] = (tokens - 1, now)
        if len(self._buckets) > 10000:
            self._buckets = {h: v for h, v in self._buckets.items() if now - v[1] < 60}
        return True


class SipFront(asyncio.DatagramProtocol):
    def __init__(
        self,
        *,
        pool: SipPool,
        router: Router,
        public_host: str,
        internal_host: str,
        rate: float = 50.0,
        burst: float = 200.0,
    ) -> None:
        self.pool = pool
        self.router = router
        self.public_host = public_host
        self.internal_host = internal_host
        self.port = 0
        self.transport: asyncio.DatagramTransport | None = None
        self.tcp: TcpSide | None = None
        self.dialogs: dict[str, Dialog] = {}
        self.pending: set[str] = set()  # Call-IDs being routed
        self.limiter = RateLimiter(rate, burst)
        self.on_dtmf: Callable[[str, str], None] | None = None  # (Call-ID, key) from SIP INFO
        self.on_dial: DialLookup | None = None  # outbound calls: the worker's dial -> Dial
        self.registrar: Registrar | None = None  # answers REGISTER (desk phones)
        # Requests the front sends itself (REGISTER to trunks): their responses, by Call-ID.
        self.own_requests: dict[str, Callable[[SipMessage], None]] = {}
        self.stats = {"received": 0, "malformed": 0, "refused": 0, "limited": 0, "forwarded": 0}
        self._tasks: set[asyncio.Task[Any]] = set()

    # -- lifecycle ----------------------------------------------------------------------------

    async def listen(self, host: str, port: int) -> None:
        """UDP and TCP on the same port (TCP: `voice.sip.tcp`)."""
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(lambda: self, local_addr=(host, port))
        self.transport = transport  # type: ignore[assignment]
        self.port = transport.get_extra_info("sockname")[1]
        self.tcp = TcpSide(self._stream_received)
        try:
            await self.tcp.listen(host, self.port)
        except OSError as exc:  # the TCP port is taken by something else: UDP still works
            log.error("SIP over TCP is off: cannot listen on %s:%d (%s)", host, self.port, exc)
            self.tcp = None

    def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self.transport is not None:
            self.transport.close()
        if self.tcp is not None:
            self.tcp.close()

    def forget_later(self, call_id: str) -> None:
        asyncio.get_running_loop().call_later(DIALOG_LINGER_S, self.dialogs.pop, call_id, None)

    # -- receiving ----------------------------------------------------------------------------

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:  # type: ignore[override]
        worker = self.pool.by_address(addr)
        if worker is not None:
            self.stats["received"] += 1
            self._from_worker(data, worker)
            return
        self._received(data, addr, stream=False)

    def _stream_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self._received(data, addr, stream=True)

    def _received(self, data: bytes, addr: tuple[str, int], *, stream: bool) -> None:
        """One message from outside, by UDP or over a TCP connection."""
        self.stats["received"] += 1
        if not data.strip(b"\r\n"):
            return  # keep-alive
        if not self.limiter.allow(addr[0], time.monotonic()):
            self.stats["limited"] += 1
            return
        try:
            message = parse(data, stream=stream)
        except SipError as exc:
            self.stats["malformed"] += 1
            answer = best_effort_response(data, exc)
            if answer is not None:
                self._send(answer, addr)
            return
        try:
            if message.is_request:
                self._request_from_outside(message, addr)
            else:
                self._response_from_outside(message)
        except SipError as exc:  # a header we only parse on demand was malformed
            self.stats["malformed"] += 1
            if message.is_request and message.method != "ACK":
                self._answer(message, addr, exc.status, exc.reason)

    def _request_from_outside(self, message: SipMessage, addr: tuple[str, int]) -> None:
        method = message.method
        refusal = application_refusal(message)
        if refusal is not None:
            self.stats["refused"] += 1
            if method != "ACK" and refusal.status:
                self._answer(message, addr, refusal.status, refusal.reason, refusal.headers)
            return
        call_id = message.call_id
        dialog = self.dialogs.get(call_id)
        if dialog is not None and dialog.worker.alive:
            key = info_dtmf(message) if method == "INFO" else None
            if key is not None and self.on_dtmf is not None:
                # pjsua2 answers INFO DTMF with 415 (only RFC 4733 reaches its callback): the
                # front takes it, answers 200 and hands the key to the call.
                self._answer(message, addr, 200)
                self.on_dtmf(call_id, key)
                return
            self._forward_to_worker(message, addr, dialog)
            return
        if call_id in self.pending:
            return  # a retransmission of an INVITE still being routed
        if method == "INVITE" and message.to.tag is None:
            self._answer(message, addr, 100)
            self.pending.add(call_id)
            self._spawn(self._route(message, addr))
        elif method == "OPTIONS":
            self._answer(
                message, addr, 200, headers=(("Allow", ALLOW), ("Accept", "application/sdp"))
            )
        elif method == "ACK":
            return
        elif method == "REGISTER" and self.registrar is not None:
            self._spawn(self._register(message, addr))
        elif method == "REGISTER":
            self._answer(message, addr, 501, "Registration Not Offered Here")
        elif method in ("CANCEL", "BYE", "INFO", "UPDATE", "INVITE", "PRACK"):
            self._answer(message, addr, 481)
        else:
            self._answer(message, addr, 405, headers=(("Allow", ALLOW),))

    async def _route(self, message: SipMessage, addr: tuple[str, int]) -> None:
        call_id = message.call_id
        try:
            decision = await self.router(message, addr)
            if isinstance(decision, Refusal):
                self._answer(message, addr, decision.status, decision.reason, decision.headers)
                return
            worker = await self.pool.reserve()
            if worker is None:
                self._answer(message, addr, 503, headers=(("Retry-After", "5"),))
                return
            dialog = Dialog(worker, addr, decision.target)
            self.dialogs[call_id] = dialog
            self._forward_to_worker(message, addr, dialog, record_route=True)
        except Exception:
            log.exception("routing an INVITE failed")
            self._answer(message, addr, 500)
        finally:
            self.pending.discard(call_id)

    async def _register(self, message: SipMessage, addr: tuple[str, int]) -> None:
        assert self.registrar is not None
        try:
            status, reason, headers = await self.registrar(message, addr)
        except SipError as exc:
            status, reason, headers = exc.status, exc.reason, ()
        except ChorusError as exc:  # the store or the bus is down: the phone retries
            status, reason, headers = 503, None, (("Retry-After", "30"),)
            log.warning("REGISTER: %s", exc.message)
        except Exception:
            log.exception("REGISTER failed")
            status, reason, headers = 500, None, ()
        self._answer(message, addr, status, reason, headers)

    def _response_from_outside(self, message: SipMessage) -> None:
        """A response to a request a worker sent (e.g. 200 for its BYE), or to our own."""
        own = self.own_requests.get(message.call_id)
        if own is not None:
            own(message)
            return
        dialog = self.dialogs.get(message.call_id)
        if dialog is None or not dialog.worker.alive:
            return
        top = message.pop_first("Via")
        if top is None or not self._is_ours(top):
            return
        self._send(message.to_bytes(), dialog.worker.address)

    # -- forwarding ---------------------------------------------------------------------------

    def _forward_to_worker(
        self, message: SipMessage, addr: tuple[str, int], dialog: Dialog, record_route=False
    ) -> None:
        top = message.top_via
        via_value = message.get_all("Via")[0]
        if top.host != addr[0]:
            via_value += f";received={addr[0]}"
        if top.rport == "":
            via_value = via_value.replace(";rport", f";rport={addr[1]}", 1)
        message.pop_first("Via")
        message.prepend("Via", via_value)
        self._drop_our_routes(message)
        max_forwards = message.max_forwards
        message.set("Max-Forwards", str((max_forwards if max_forwards is not None else 70) - 1))
        message.prepend("Via", f"SIP/2.0/UDP {self._internal()};branch={self._branch(message)}")
        if record_route:
            for route in reversed(self._record_routes(addr, worker_is_uas=True)):
                message.prepend("Record-Route", route)
        self.stats["forwarded"] += 1
        self._send(message.to_bytes(), dialog.worker.address)

    def _from_worker(self, data: bytes, worker: WorkerHandle) -> None:
        try:
            message = parse(data)
        except SipError:
            log.warning("a SIP worker sent a malformed message")
            return
        dialog = self.dialogs.get(message.call_id)
        if dialog is None:
            if message.is_request and message.method == "INVITE":
                self._spawn(self._dial_out(message, worker))
            return
        if message.is_request:
            self._drop_our_routes(message)
            if dialog.from_ is not None:
                self._set_from(message, dialog.from_)
            if message.get("X-Chorus-Dial") is not None and dialog.dial is not None:
                # The dialled INVITE again, with the credentials a trunk asked for.
                message.remove("X-Chorus-Dial")
                message.uri = dialog.dial.uri
                for route in reversed(self._record_routes(dialog.peer, worker_is_uas=False)):
                    message.prepend("Record-Route", route)
            message.prepend("Via", f"{self._via(dialog.peer)};branch={self._branch(message)}")
        else:
            top = message.pop_first("Via")
            if top is None or not self._is_ours(top):
                return
        self._send(message.to_bytes(), dialog.peer)

    async def _dial_out(self, message: SipMessage, worker: WorkerHandle) -> None:
        """A worker's outbound INVITE: addressed to us, with the parent's dial key. It goes
        to the dialled URI with the caller's From and our Record-Route, so the rest of the
        dialog passes here too."""
        key = (message.get("X-Chorus-Dial") or "").strip()
        message.remove("X-Chorus-Dial")
        dial = None
        if key.isdigit() and self.on_dial is not None:
            dial = self.on_dial(worker, int(key), message.call_id)
        if dial is None:
            self._send(response_to(message, 403, "Not A Dial").to_bytes(), worker.address)
            return
        host, port = dial.uri.host.strip("[]"), dial.uri.port or 5060
        address = dial.address
        if address is None:
            try:
                infos = await asyncio.get_running_loop().getaddrinfo(
                    host, port, family=socket.AF_INET, type=socket.SOCK_DGRAM
                )
                address = infos[0][4][:2]
            except (OSError, IndexError):
                log.info("dialling %s: cannot resolve %s", dial.uri, host)
                answer = response_to(message, 404, "Host Not Found")
                self._send(answer.to_bytes(), worker.address)
                return
        message.uri = dial.uri
        self._drop_our_routes(message)
        self._set_from(message, dial.from_)
        max_forwards = message.max_forwards
        message.set("Max-Forwards", str((max_forwards if max_forwards is not None else 70) - 1))
        for route in reversed(self._record_routes(address, worker_is_uas=False)):
            message.prepend("Record-Route", route)
        message.prepend("Via", f"{self._via(address)};branch={self._branch(message)}")
        self.dialogs[message.call_id] = Dialog(
            worker, address, dial.target, from_=dial.from_, dial=dial
        )
        self.stats["dialled"] = self.stats.get("dialled", 0) + 1
        self._send(message.to_bytes(), address)

    @staticmethod
    def _set_from(message: SipMessage, from_: str) -> None:
        """The caller's From in place of the worker's, keeping the worker's tag (the dialog's
        identity: RFC 3261 12, a From URI may differ between requests of one dialog)."""
        tag = message.from_.tag
        message.set("From", f"{from_};tag={tag}" if tag else from_)

    def _drop_our_routes(self, message: SipMessage) -> None:
        while True:
            routes = message.get_all("Route")
            if not routes or not any(
                f"{host}:{self.port}" in routes[0]
                for host in (self.public_host, self.internal_host)
            ):
                return
            message.pop_first("Route")

    def _record_routes(self, peer: tuple[str, int], *, worker_is_uas: bool) -> list[str]:
        """Our Record-Route entries, in header order (the first is nearest the UAS). One for a
        UDP peer; for a TCP peer two (RFC 5658): the worker must reach us over UDP and the
        peer over TCP, and each uses the entry on its own side."""
        public = f"<sip:{self.public_host}:{self.port};lr>"
        if not self._over_tcp(peer):
            return [public]
        outside = f"<sip:{self.public_host}:{self.port};lr;transport=tcp>"
        inside = f"<sip:{self.internal_host}:{self.port};lr>"
        return [inside, outside] if worker_is_uas else [outside, inside]

    def _over_tcp(self, peer: tuple[str, int]) -> bool:
        return self.tcp is not None and peer in self.tcp.connections

    def _via(self, peer: tuple[str, int]) -> str:
        return f"SIP/2.0/{'TCP' if self._over_tcp(peer) else 'UDP'} {self._public()}"

    def _is_ours(self, via: str) -> bool:
        return f":{self.port};" in via and (self.public_host in via or self.internal_host in via)

    def _internal(self) -> str:
        return f"{self.internal_host}:{self.port}"

    def _public(self) -> str:
        return f"{self.public_host}:{self.port}"

    def _branch(self, message: SipMessage) -> str:
        top = message.get_all("Via")[0]
        seed = f"{top}|{message.call_id}|{message.cseq.number}"
        if message.method in ("ACK", "CANCEL"):
            seed = f"{top}|{message.call_id}|{message.cseq.number}"  # same as the INVITE's
        return "z9hG4bK-ch" + hashlib.sha1(seed.encode("utf-8", "surrogateescape")).hexdigest()[:20]

    # -- answering ----------------------------------------------------------------------------

    def _answer(
        self,
        request: SipMessage,
        addr: tuple[str, int],
        status: int,
        reason: str | None = None,
        headers: tuple[tuple[str, str], ...] = (),
    ) -> None:
        tag = hashlib.sha1(request.call_id.encode("utf-8", "surrogateescape")).hexdigest()[:10]
        response = response_to(
            request, status, reason, to_tag=tag if status > 100 else None, headers=headers
        )
        self._send(response.to_bytes(), addr)

    def send(self, data: bytes, addr: tuple[str, int]) -> None:
        """Send a message of our own (e.g. a REGISTER to a trunk)."""
        self._send(data, addr)

    def _send(self, data: bytes, addr: tuple[str, int]) -> None:
        if self.tcp is not None and self.tcp.send(addr, data):
            return
        if self.transport is not None and not self.transport.is_closing():
            self.transport.sendto(data, addr)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
