"""The registrar: desk phones REGISTER with the user's app username and password (digest),
and ring with the user's app devices when someone calls the user.

Bindings live in the bus (a member set per user, each member with the binding's expiry as
its TTL), so every node sees every phone and a phone that stops refreshing drops out by
itself. A binding keeps the address the REGISTER came from: calls go there, which works
behind a NAT that rewrote the phone's port (like `rport`)."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass

from voice.bus import Bus
from voice.sip import digest
from voice.sip.message import SipError, SipMessage, SipUri, parse_uri
from voice.store import Store

MIN_EXPIRES = 60
MAX_EXPIRES = 3600
Answer = tuple[int, str | None, tuple[tuple[str, str], ...]]  # status, reason, headers


@dataclass(frozen=True)
class Binding:
    device: str  # how calls name this phone among the user's devices
    contact: SipUri
    address: tuple[str, int]

    def member(self) -> str:
        return json.dumps([str(self.contact), self.address[0], self.address[1]])

    @classmethod
    def of_member(cls, member: str) -> Binding | None:
        try:
            contact, host, port = json.loads(member)
            uri = parse_uri(contact, allow_headers=False)
        except (ValueError, TypeError, SipError):
            return None
        return cls(device_for(str(uri)), uri, (str(host), int(port)))


def device_for(contact: str) -> str:
    return "phone-" + hashlib.sha1(contact.encode()).hexdigest()[:10]


def _key(user_id: str) -> str:
    return f"sip-phones:{{{user_id}}}"


def _source_key(address: tuple[str, int]) -> str:
    return f"sip-source:{{{address[0]}:{address[1]}}}"


class Registrar:
    def __init__(
        self, store: Store, bus: Bus, nonce_key: str, clock: Callable[[], float] = time.time
    ) -> None:
        self.store = store
        self.bus = bus
        self.nonce_key = nonce_key
        self.clock = clock

    async def phones(self, user_id: str) -> dict[str, Binding]:
        found = {}
        for member in await self.bus.members(_key(user_id)):
            binding = Binding.of_member(member)
            if binding is not None:
                found[binding.device] = binding
        return found

    async def register(self, message: SipMessage, source: tuple[str, int]) -> Answer:
        """The answer to a REGISTER (RFC 3261 10.3)."""
        now = self.clock()
        username = message.to.uri.user_unescaped or ""
        found = await self.store.sip_ha1(username) if username else None
        authorization = message.get("Authorization")
        credentials = digest.parse_credentials(authorization) if authorization else None
        if credentials is None:
            return self._challenge(now)
        if found is None or found[1] is None or credentials.username != username:
            return 403, "Forbidden", ()  # the same answer for "no such user": no probing
        user, ha1 = found
        why = digest.verify(credentials, "REGISTER", ha1, key=self.nonce_key, now=now)
        if why == "stale":
            return self._challenge(now, stale=True)
        if why is not None:
            return 403, "Forbidden", ()
        return await self._update(user.id, message, source)

    async def caller(self, message: SipMessage, source: tuple[str, int]) -> str | Answer:
        """Who places this INVITE, as a user id: the owner of the registered phone it comes
        from, or the user whose SIP credentials answer our challenge. Otherwise the answer
        to send: 407 with a challenge (phones retry with credentials), or 403."""
        owner = await self.bus.get(_source_key(source))
        if owner is not None:
            return str(owner["user_id"])
        now = self.clock()
        header = message.get("Proxy-Authorization")
        credentials = digest.parse_credentials(header) if header else None
        if credentials is None:
            return self._challenge(now, proxy=True)
        found = await self.store.sip_ha1(credentials.username)
        if found is None or found[1] is None:
            return 403, "Forbidden", ()
        why = digest.verify(credentials, "INVITE", found[1], key=self.nonce_key, now=now)
        if why == "stale":
            return self._challenge(now, stale=True, proxy=True)
        if why is not None:
            return 403, "Forbidden", ()
        return found[0].id

    def _challenge(self, now: float, *, stale: bool = False, proxy: bool = False) -> Answer:
        value = digest.challenge(self.nonce_key, now, stale=stale)
        if proxy:
            return 407, "Proxy Authentication Required", (("Proxy-Authenticate", value),)
        return 401, "Unauthorized", (("WWW-Authenticate", value),)

    async def _update(self, user_id: str, message: SipMessage, source: tuple[str, int]) -> Answer:
        default = _expires(message.get("Expires"), MAX_EXPIRES)
        key = _key(user_id)
        if any(v.strip() == "*" for v in message.get_all("Contact")):
            if default != 0 or len(message.get_all("Contact")) != 1:
                return 400, "Wildcard Contact Needs Expires 0", ()
            for binding in (await self.phones(user_id)).values():
                await self.bus.remove_member(key, binding.member())
                await self.bus.delete(_source_key(binding.address))
            return 200, "OK", ()
        granted: list[tuple[Binding, int]] = []
        for contact in message.contacts:
            expires = _expires(contact.param("expires"), default)
            if 0 < expires < MIN_EXPIRES:
                return 423, "Interval Too Brief", (("Min-Expires", str(MIN_EXPIRES)),)
            granted.append((Binding(device_for(str(contact.uri)), contact.uri, source), expires))
        for binding, expires in granted:
            current = await self.phones(user_id)
            old = current.get(binding.device)
            if old is not None:  # the same phone from a new address: one binding
                await self.bus.remove_member(key, old.member())
                await self.bus.delete(_source_key(old.address))
            if expires:
                ttl = min(expires, MAX_EXPIRES)
                await self.bus.add_member(key, binding.member(), ttl_s=ttl)
                await self.bus.put(_source_key(source), {"user_id": user_id}, ttl_s=ttl)
        listed = [
            ("Contact", f"<{b.contact}>;expires={min(e, MAX_EXPIRES)}") for b, e in granted if e
        ]
        return 200, "OK", tuple(listed)


def _expires(value: str | None, default: int) -> int:
    if value is None:
        return default
    try:
        return max(0, int(value.strip()))
    except ValueError:
        return default
