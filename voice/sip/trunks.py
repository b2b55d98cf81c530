"""SIP trunks: connections to a carrier or a PBX, configured by the admin.

A trunk carries the numbers that match one of its prefixes (the longest match wins) out to
its proxy, with its digest credentials and a caller id; calls arriving from its address are
trusted (no challenge) and reach the user whose phone number was dialled, the hotline of that
number, or the trunk's `inbound_to`. Pure: the settings and the choices; the registration
client is `voice.sip.trunk_register`."""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field

NUMBER = re.compile(r"^\+?[0-9]{2,20}$")


@dataclass(frozen=True)
class Trunk:
    name: str
    proxy: str  # host[:port] of the carrier's SIP proxy
    username: str = ""  # digest credentials (and the From user without a caller id)
    password: str = ""
    register: bool = False  # keep a registration up (carriers that send calls to it)
    expires: int = 600
    caller_id: str | None = None  # the From user of outbound calls; None: the caller's phone
    prefixes: tuple[str, ...] = field(default=("",))  # numbers it carries; "" is any
    inbound_to: str | None = None  # username, hotline:<number> or room-<id> for inbound

    @property
    def host(self) -> str:
        return self.proxy.rsplit(":", 1)[0] if _has_port(self.proxy) else self.proxy

    @property
    def port(self) -> int:
        return int(self.proxy.rsplit(":", 1)[1]) if _has_port(self.proxy) else 5060

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Trunk:
        data = json.loads(text)
        data["prefixes"] = tuple(data.get("prefixes") or ("",))
        return cls(**data)

    def public(self) -> dict[str, object]:
        """What the API shows: everything but the password."""
        data = asdict(self)
        data["password"] = "********" if self.password else ""
        data["prefixes"] = list(self.prefixes)
        return data


def _has_port(proxy: str) -> bool:
    return ":" in proxy and proxy.rsplit(":", 1)[1].isdigit()


def number_of(destination: str) -> str | None:
    """The phone number a destination dials (`tel:+86...`, `+86...`, `12345`), or None."""
    text = destination[4:] if destination.startswith("tel:") else destination
    text = text.replace("-", "").replace(" ", "")
    return text if NUMBER.match(text) else None


def pick(trunks: list[Trunk], number: str) -> Trunk | None:
    """The trunk with the longest prefix matching `number`."""
    best: Trunk | None = None
    best_length = -1
    for trunk in trunks:
        for prefix in trunk.prefixes:
            if number.startswith(prefix) and len(prefix) > best_length:
                best, best_length = trunk, len(prefix)
    return best
