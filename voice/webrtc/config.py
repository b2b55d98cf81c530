"""How the server's peer connections reach the network: ICE servers and host candidates."""

from __future__ import annotations

import ipaddress
import logging
from dataclasses import dataclass

import aioice.ice
from aiortc import RTCConfiguration, RTCIceServer

log = logging.getLogger(__name__)

_SCHEMES = ("stun:", "stuns:", "turn:", "turns:")


@dataclass(frozen=True)
class WebRtcConfig:
    """`ice_servers` are URLs: "stun:host:port" or "turn:user:pass@host:port[?transport=tcp]".

    `opus_dtx` asks peers to stop sending during silence (Opus DTX): fewer packets to relay
    or decode, but whoever consumes `on_audio` must read gaps as silence, not loss.
    """

    media_host: str = "127.0.0.1"
    ice_servers: tuple[str, ...] = ()
    opus_dtx: bool = False

    def __post_init__(self) -> None:
        ipaddress.ip_address(self.media_host)  # ValueError early, not at the first call
        for url in self.ice_servers:
            parse_ice_server(url)

    @property
    def opus_fmtp(self) -> str:
        """The Opus parameters of our answers: in-band FEC lets the receiving browser repair
        a lost packet from the next one, which a relay passes along untouched."""
        return "minptime=10;useinbandfec=1" + (";usedtx=1" if self.opus_dtx else "")

    def rtc_configuration(self) -> RTCConfiguration:
        # An explicit list, even empty: with `None` aiortc adds Google's public STUN server,
        # which leaks every call's setup to a third party and stalls gathering offline.
        return RTCConfiguration(iceServers=[parse_ice_server(url) for url in self.ice_servers])


def parse_ice_server(url: str) -> RTCIceServer:
    """One ICE server URL into aiortc's form; credentials go in `user:pass@` of TURN URLs."""
    if not isinstance(url, str) or not url.startswith(_SCHEMES):
        raise ValueError(f"ICE server URL must start with one of {_SCHEMES}: {_redact(url)}")
    scheme, _, rest = url.partition(":")
    userinfo, at, hostport = rest.rpartition("@")
    if not hostport or hostport.startswith(("/", ":")):
        raise ValueError(f"ICE server URL has no host: {_redact(url)}")
    if not at:
        if scheme.startswith("turn"):
            raise ValueError(f"TURN server URL needs user:pass@ before the host: {url}")
        return RTCIceServer(urls=url)
    if scheme.startswith("stun"):
        raise ValueError(f"STUN server URLs take no credentials: {_redact(url)}")
    username, colon, password = userinfo.partition(":")
    if not username or not colon:
        raise ValueError(f"TURN server URL needs user:pass@ before the host: {_redact(url)}")
    return RTCIceServer(urls=f"{scheme}:{hostport}", username=username, credential=password)


def _redact(url: object) -> str:
    """The URL for an error message, without credentials."""
    if not isinstance(url, str):
        return f"<{type(url).__name__}>"
    head, at, host = url.rpartition("@")
    return f"{head.partition(':')[0]}:***@{host}" if at else url


def configure_host_candidates(media_host: str) -> None:
    """Make every peer connection in this process offer exactly `media_host` as its host
    candidate.

    aioice gathers on every interface except 127.0.0.1, and aiortc has no setting for it.
    A server must announce the one address clients can reach (and bind only there), and
    loopback tests need 127.0.0.1 itself, so we replace `aioice.ice.get_host_addresses`.
    It is process-wide by nature (test clients in the same process share it), so the entry
    point calls this once at startup, not at import; calling it again with the same host is
    a no-op, with another host it re-targets and logs a warning.
    """
    address = ipaddress.ip_address(media_host)
    current = getattr(aioice.ice.get_host_addresses, "chorus_media_host", None)
    if current == str(address):
        return
    if current is not None:
        log.warning("host candidates move from %s to %s", current, address)

    def get_host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        wanted = use_ipv4 if address.version == 4 else use_ipv6
        return [str(address)] if wanted else []

    get_host_addresses.chorus_media_host = str(address)  # type: ignore[attr-defined]
    aioice.ice.get_host_addresses = get_host_addresses
