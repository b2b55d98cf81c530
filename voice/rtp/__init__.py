"""Plain-RTP media: packets, RTCP reports and UDP legs (stdlib sockets only, no aiortc)."""

from voice.rtp.leg import CODECS, RtpLeg, RtpPorts, RtpStats
from voice.rtp.packet import RtpPacket, build_rtp, parse_rtp

__all__ = ["CODECS", "RtpLeg", "RtpPacket", "RtpPorts", "RtpStats", "build_rtp", "parse_rtp"]
