"""How loud an incoming stream is, as cheaply as possible: the mixer decodes only what it mixes.

Pure: numpy and bytes only. Three sources, cheapest first:
- the RTP audio-level header extension (RFC 6464) that browsers send with every packet,
- the size of the Opus packet itself (DTX and silence frames are a few bytes),
- the decoded PCM, when the sender gives no level and the packet is a real frame.

Levels are in dBov everywhere in Chorus: 0.0 is the loudest a stream can be (a full-scale
square wave), a full-scale sine is about -3, speech is typically -20 to -35 and -127 means
silence. RFC 6464 carries the same number without its sign (0..127 "-dBov"); we flip it at
parse time so that thresholds read naturally ("louder than -40 dBov") and "greater is louder".
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import numpy as np

SILENCE_DBOV = -127  # the quietest level RFC 6464 can express; also what silence maps to
_SILENCE_MEAN_SQUARE = 10.0 ** (SILENCE_DBOV / 10)

# Opus frames this short cannot hold speech: SILK's lowest rate (6 kb/s) already needs 15
# bytes per 20 ms. libopus emits a 1-byte TOC-only packet for a DTX frame ("need not be
# sent"), 2 bytes for an empty frame of code 1/2, and a 3-byte CELT frame codes digital
# silence (the packet `voice.media.opus.SILENCE` is one). Longer comfort-noise refreshes that
# some senders emit during DTX are decoded like speech: they are rare (one per 400 ms).
SILENT_PACKET_MAX_BYTES = 3

_ONE_BYTE_PROFILE = 0xBEDE  # RFC 8285 section 4.2
_TWO_BYTE_PROFILE_MASK = 0xFFF0  # RFC 8285 section 4.3: 0x100 followed by 4 "appbits"
_TWO_BYTE_PROFILE = 0x1000


def parse_audio_level_extension(value: bytes) -> tuple[bool, int]:
    """Decode an RFC 6464 audio-level element: (voice activity, level in dBov, -127..0).

    `value` is the element's data (after the RFC 8285 ID/length byte): its first byte is
    the V flag and the 7-bit level, 0 the loudest and 127 silence. Padding bytes that may
    follow in two-byte-header form are ignored.
    """
    if not value:
        raise ValueError("an audio-level element carries one byte")
    byte = value[0]
    return bool(byte & 0x80), -(byte & 0x7F)


def header_extension_element(profile: int, extensions: bytes, ext_id: int) -> bytes | None:
    """The data of element `ext_id` in an RTP header-extension block (RFC 8285), or None.

    `profile` is the 16-bit "defined by profile" field and `extensions` the block after the
    length word. Plain-RTP legs that parse packets themselves use this to find the
    audio-level element; a malformed block yields None rather than an error, since senders'
    bugs must not cost a packet.
    """
    one_byte = profile == _ONE_BYTE_PROFILE
    if not one_byte and profile & _TWO_BYTE_PROFILE_MASK != _TWO_BYTE_PROFILE:
        return None
    pos, end = 0, len(extensions)
    while pos < end:
        head = extensions[pos]
        if head == 0:  # padding between elements
            pos += 1
            continue
        if one_byte:
            element_id, length, pos = head >> 4, (head & 0x0F) + 1, pos + 1
            if element_id == 15:  # reserved: stop parsing (RFC 8285 section 4.2)
                return None
        else:
            if pos + 1 >= end:
                return None
            element_id, length, pos = head, extensions[pos + 1], pos + 2
        if pos + length > end:
            return None
        if element_id == ext_id:
            return extensions[pos : pos + length]
        pos += length
    return None


def pcm_level_dbov(pcm: np.ndarray) -> float:
    """RMS level of int16 PCM in dBov (RFC 6465 appendix A), clamped to -127..0.

    Costs a few microseconds for a 20 ms frame: one float conversion and one dot product.
    """
    if len(pcm) == 0:
        return float(SILENCE_DBOV)
    samples = pcm.astype(np.float32)
    mean_square = float(np.dot(samples, samples)) / (len(samples) * 32768.0 * 32768.0)
    if mean_square <= _SILENCE_MEAN_SQUARE:
        return float(SILENCE_DBOV)
    return min(0.0, 10.0 * float(np.log10(mean_square)))


def opus_packet_is_silent(payload: bytes) -> bool:
    """Whether an Opus packet can be skipped without decoding: DTX or a silence frame.

    A heuristic on size alone (see SILENT_PACKET_MAX_BYTES): it never calls speech silent,
    but may call a comfort-noise refresh speech, which only costs one decode.
    """
    return len(payload) <= SILENT_PACKET_MAX_BYTES


class OpusMode(Enum):
    SILK = "silk"
    HYBRID = "hybrid"
    CELT = "celt"


@dataclass(frozen=True, slots=True)
class OpusToc:
    """What the first byte of an Opus packet says (RFC 6716 section 3.1)."""

    config: int
    mode: OpusMode
    frame_samples: int  # per frame, at 48 kHz
    stereo: bool
    frame_count: int

    @property
    def duration_samples(self) -> int:
        return self.frame_samples * self.frame_count

    @property
    def can_carry_fec(self) -> bool:
        """In-band FEC (LBRR) lives in the SILK layer; CELT-only packets never carry it."""
        return self.mode is not OpusMode.CELT


_CONFIG_FRAME_SAMPLES = (
    (480, 960, 1920, 2880) * 3  # SILK NB, MB, WB: 10, 20, 40, 60 ms
    + (480, 960) * 2  # hybrid SWB, FB: 10, 20 ms
    + (120, 240, 480, 960) * 4  # CELT NB, WB, SWB, FB: 2.5, 5, 10, 20 ms
)


def parse_opus_toc(payload: bytes) -> OpusToc | None:
    """Parse the TOC byte (and the frame count of code-3 packets); None if malformed."""
    if not payload:
        return None
    toc = payload[0]
    config, code = toc >> 3, toc & 0x03
    if code == 0:
        count = 1
    elif code in (1, 2):
        count = 2
    elif len(payload) >= 2 and payload[1] & 0x3F:
        count = payload[1] & 0x3F
    else:
        return None
    mode = OpusMode.SILK if config < 12 else OpusMode.HYBRID if config < 16 else OpusMode.CELT
    return OpusToc(config, mode, _CONFIG_FRAME_SAMPLES[config], bool(toc & 0x04), count)
