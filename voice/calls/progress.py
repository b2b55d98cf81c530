"""Call-progress tones (ringback, busy) of a region, encoded once and shared by every call."""

from __future__ import annotations

from voice.media import tones
from voice.media.opus import OpusClip, encode_loop


class ProgressTones:
    def __init__(self, region: str, bitrate: int):
        self.region = region
        # Encoded eagerly by the entry point, never at import: a few tens of ms of CPU once,
        # so no caller waits for an encode on call setup.
        self.ringback = encode_loop(tones.synthesize(tones.RINGBACK[region]), bitrate)
        self.busy = encode_loop(tones.synthesize(tones.BUSY[region]), bitrate)

    async def ringback_for(self, call_id: str, caller_id: str, callee_id: str) -> OpusClip:
        return self.ringback
