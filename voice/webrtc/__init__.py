"""WebRTC legs: the only package that imports aiortc and aioice."""

from voice.webrtc.closing import close_peer_connection
from voice.webrtc.config import WebRtcConfig, configure_host_candidates, parse_ice_server
from voice.webrtc.leg import WebRtcLeg

__all__ = [
    "WebRtcConfig",
    "WebRtcLeg",
    "close_peer_connection",
    "configure_host_candidates",
    "parse_ice_server",
]
