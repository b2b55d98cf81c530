"""Keeping a trunk registered: the client side of REGISTER, sent by the SIP front itself.

REGISTER with the trunk's digest credentials (answering a 401/407 once per attempt), then
again at 80 % of the granted expiry; after a failure, again after a backoff (30 s doubling to
5 min). Retransmits over UDP like a client transaction (0.5, 1, 2 s). The status is what the
admin sees: `registered`, `failed: 403 Forbidden`, `unreachable`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import socket
from collections.abc import Callable

from voice.sip import digest
from voice.sip.message import SipMessage
from voice.sip.trunks import Trunk

log = logging.getLogger("chorus.sip")

Address = tuple[str, int]
RETRANSMITS = (0.5, 1.0, 2.0, 4.0)


class TrunkRegistration:
    def __init__(
        self, trunk: Trunk, *, send: Callable[[bytes, Address], None], contact: str, via: str
    ) -> None:
        self.trunk = trunk
        self.send = send
        self.contact = contact  # host:port phones of the carrier reach us at
        self.via = via  # our sent-by, host:port
        self.call_id = f"reg-{secrets.token_hex(8)}@chorus"
        self.tag = secrets.token_hex(4)
        self.cseq = 0
        self.status = "starting"
        self.address: Address | None = None
        self._waiting: tuple[int, asyncio.Future[SipMessage]] | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"chorus-trunk-{self.trunk.name}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self.status == "registered" and self.address is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._register(expires=0), 3)

    def response(self, message: SipMessage) -> None:
        """A response whose Call-ID is ours (the front hands it here)."""
        waiting = self._waiting
        if waiting is None or message.cseq.number != waiting[0] or (message.status or 0) < 200:
            return  # another request's, or provisional
        if not waiting[1].done():
            waiting[1].set_result(message)

    async def _run(self) -> None:
        backoff = 30.0
        while True:
            try:
                infos = await asyncio.get_running_loop().getaddrinfo(
                    self.trunk.host, self.trunk.port, family=socket.AF_INET, type=socket.SOCK_DGRAM
                )
                self.address = infos[0][4][:2]
                granted = await self._register(expires=self.trunk.expires)
            except (OSError, TimeoutError) as exc:
                granted, self.status = None, "unreachable"
                log.warning("trunk %s: %s", self.trunk.name, exc or "no answer")
            if granted:
                backoff = 30.0
                await asyncio.sleep(max(10.0, granted * 0.8))
            else:
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 300.0)

    async def _register(self, *, expires: int) -> int | None:
        """One REGISTER (with credentials if challenged); the granted expiry, or None."""
        answer = await self._transaction(expires, None)
        if answer.status in (401, 407):
            header = "WWW-Authenticate" if answer.status == 401 else "Proxy-Authenticate"
            authorization = digest.answer_challenge(
                answer.get(header) or "", "REGISTER", self._uri(), self.trunk.username,
                self.trunk.password,
            )  # fmt: skip
            if authorization is not None:
                name = "Authorization" if answer.status == 401 else "Proxy-Authorization"
                answer = await self._transaction(expires, (name, authorization))
        if answer.status == 200:
            self.status = "registered" if expires else "unregistered"
            log.info("trunk %s: %s", self.trunk.name, self.status)
            return _granted(answer, expires)
        self.status = f"failed: {answer.status} {answer.reason}"
        log.warning("trunk %s: REGISTER %s", self.trunk.name, self.status)
        return None

    async def _transaction(self, expires: int, auth: tuple[str, str] | None) -> SipMessage:
        assert self.address is not None
        self.cseq += 1
        future: asyncio.Future[SipMessage] = asyncio.get_running_loop().create_future()
        self._waiting = (self.cseq, future)
        user, uri = self.trunk.username, self._uri()
        lines = [
            f"REGISTER {uri} SIP/2.0",
            f"Via: SIP/2.0/UDP {self.via};branch=z9hG4bK-tr{secrets.token_hex(8)};rport",
            f"From: <sip:{user}@{self.trunk.host}>;tag={self.tag}",
            f"To: <sip:{user}@{self.trunk.host}>",
            f"Call-ID: {self.call_id}",
            f"CSeq: {self.cseq} REGISTER",
            f"Contact: <sip:{user}@{self.contact}>",
            f"Expires: {expires}",
            "Max-Forwards: 70",
            "User-Agent: Chorus",
        ]
        if auth is not None:
            lines.append(f"{auth[0]}: {auth[1]}")
        data = ("\r\n".join(lines) + "\r\nContent-Length: 0\r\n\r\n").encode()
        try:
            for wait in RETRANSMITS:
                self.send(data, self.address)
                with contextlib.suppress(TimeoutError):
                    return await asyncio.wait_for(asyncio.shield(future), wait)
            raise TimeoutError(f"no answer from {self.trunk.proxy}")
        finally:
            self._waiting = None

    def _uri(self) -> str:
        return f"sip:{self.trunk.host}:{self.trunk.port}"


def _granted(answer: SipMessage, asked: int) -> int:
    for contact in answer.contacts:
        value = contact.param("expires")
        if value and value.isdigit():
            return int(value)
    value = answer.get("Expires")
    return int(value) if value and value.strip().isdigit() else asked
