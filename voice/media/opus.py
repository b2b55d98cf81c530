"""Opus through opuslib: the one adapter for libopus.

Everything here is mono, 20 ms frames, 48 kHz (960 samples) unless a stream is made with
another `sample_rate`: the SIP workers encode and decode telephone audio at 8 kHz, which
skips resampling and costs the encoder less than half (RTP timestamps stay at 48 kHz).
Encoding is the costly step of the media path (~0.3 ms per frame), so clips that many
listeners hear (ringback, prompts, tones) are encoded once into an `OpusClip` and the same
packets are sent to everyone.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass

import numpy as np
import opuslib
import opuslib.api
import opuslib.api.ctl
import opuslib.api.decoder
import opuslib.api.encoder

SAMPLE_RATE = 48000
FRAME_SAMPLES = 960  # 20 ms at 48 kHz
MAX_PACKET_BYTES = 1275  # the largest packet RFC 6716 allows for one frame
MAX_DECODED_SAMPLES = 5760  # 120 ms, the longest Opus packet

# A CELT-only 20 ms mono frame (TOC 0xf8) whose body decodes to digital silence. Being a
# literal it costs nothing at import; tests check that libopus decodes it to zeros.
SILENCE = b"\xf8\xff\xfe"

# Frames this many bytes or shorter are DTX frames that need not be transmitted (libopus
# documents 1 or 2 bytes for "don't send" packets).
_DTX_MAX_BYTES = 2

# Samples per frame for each of the 32 TOC configurations (RFC 6716 section 3.1), at 48 kHz.
_CONFIG_FRAME_SAMPLES = (
    (480, 960, 1920, 2880) * 3  # SILK NB, MB, WB: 10, 20, 40, 60 ms
    + (480, 960) * 2  # hybrid SWB, FB: 10, 20 ms
    + (120, 240, 480, 960) * 4  # CELT NB, WB, SWB, FB: 2.5, 5, 10, 20 ms
)


@dataclass(frozen=True)
class OpusClip:
    """A loopable sequence of 20 ms mono 48 kHz Opus packets, encoded once and shared."""

    packets: tuple[bytes, ...]

    def __post_init__(self) -> None:
        if not self.packets:
            raise ValueError("an OpusClip needs at least one packet")

    @property
    def duration_s(self) -> float:
        return len(self.packets) * FRAME_SAMPLES / SAMPLE_RATE


def packet_samples(packet: bytes) -> int:
    """Duration of an Opus packet in 48 kHz samples, read from its TOC byte (RFC 6716 3.1).

    The relay needs it to keep outgoing timestamps right when a peer sends 10, 40 or 60 ms
    packets instead of the usual 20 ms. Malformed packets count as one 20 ms frame.
    """
    if not packet:
        return FRAME_SAMPLES
    toc = packet[0]
    per_frame = _CONFIG_FRAME_SAMPLES[toc >> 3]
    code = toc & 0x03
    if code == 0:
        frames = 1
    elif code in (1, 2):
        frames = 2
    elif len(packet) >= 2:
        frames = packet[1] & 0x3F
    else:
        return FRAME_SAMPLES
    return per_frame * frames if frames else FRAME_SAMPLES


def _check_frame(pcm: np.ndarray, samples: int = FRAME_SAMPLES) -> bytes:
    if pcm.dtype != np.int16 or pcm.shape != (samples,):
        raise ValueError(f"expected {samples} int16 samples, got {pcm.dtype} {pcm.shape}")
    return np.ascontiguousarray(pcm).tobytes()


class OpusEncoderStream:
    """A stateful mono VoIP encoder (48 kHz unless told): one per outgoing mix."""

    def __init__(
        self,
        *,
        bitrate: int = 32000,
        dtx: bool = False,
        complexity: int = 10,
        sample_rate: int = SAMPLE_RATE,
    ):
        self._samples = sample_rate // 50
        self._encoder = opuslib.Encoder(sample_rate, 1, opuslib.APPLICATION_VOIP)
        self._encoder.bitrate = bitrate
        self._encoder.complexity = complexity
        self._dtx = dtx
        if dtx:
            # opuslib 3.0.1's `Encoder.dtx` setter sends OPUS_GET_DTX instead of OPUS_SET_DTX,
            # so set it through the raw ctl.
            opuslib.api.encoder.encoder_ctl(self._encoder.encoder_state, opuslib.api.ctl.set_dtx, 1)

    def encode(self, pcm: np.ndarray) -> bytes:
        """Encode one 20 ms frame (960 int16 samples at 48 kHz).

        With DTX enabled, returns b"" for frames that should not be sent: the receiver
        treats the gap as silence, which is the point of DTX.
        """
        packet = self._encoder.encode(_check_frame(pcm, self._samples), self._samples)
        if self._dtx and len(packet) <= _DTX_MAX_BYTES:
            return b""
        return bytes(packet)


class OpusDecoderStream:
    """A stateful mono decoder (48 kHz out unless told): one per incoming stream heard."""

    def __init__(self, *, sample_rate: int = SAMPLE_RATE) -> None:
        self._decoder = opuslib.Decoder(sample_rate, 1)
        self._samples = sample_rate // 50
        # Decode straight into a numpy buffer: opuslib's own `decode` copies the samples
        # through a Python list, which costs more than the decoding on a busy mixer.
        self._buffer = np.zeros(MAX_DECODED_SAMPLES * sample_rate // SAMPLE_RATE, np.int16)
        self._pointer = self._buffer.ctypes.data_as(opuslib.api.c_int16_pointer)

    def decode(self, packet: bytes | None, *, fec: bool = False) -> np.ndarray:
        """Decode one packet to int16 mono samples; None means the packet was lost (PLC).

        With `fec`, `packet` is the packet *after* a lost one and what comes back is the lost
        20 ms frame, rebuilt from the in-band FEC (LBRR) copy the sender put in `packet`
        (plain PLC when it carries none). Decode `packet` itself normally afterwards.
        """
        if packet is None:
            data, length, frame_size = None, 0, self._samples
        elif fec:
            data, length, frame_size = packet, len(packet), self._samples
        else:
            data, length, frame_size = packet, len(packet), len(self._buffer)
        count = opuslib.api.decoder.libopus_decode(
            self._decoder.decoder_state,
            data,
            ctypes.c_int32(length),
            self._pointer,
            frame_size,
            1 if fec and packet is not None else 0,
        )
        if count < 0:
            raise opuslib.OpusError(count)
        return self._buffer[:count].copy()


def encode_loop(pcm: np.ndarray, bitrate: int = 32000) -> OpusClip:
    """Encode `pcm` into packets that loop seamlessly.

    Opus looks ahead 6.5 ms, carries prediction state across frames and settles on a mode
    (SILK, hybrid, CELT) and bandwidth only after a few hundred ms. Encoding the loop
    itself first (at least a full turn and 1 s) and dropping those packets leaves the
    encoder in the state a previous turn would have left it in, so the last packet flows
    into the first: no gap from the start-up state, no mode switch at the wrap.
    """
    pcm = np.asarray(pcm)
    if pcm.dtype != np.int16 or pcm.ndim != 1:
        raise ValueError("encode_loop needs a 1-D int16 array")
    if len(pcm) == 0 or len(pcm) % FRAME_SAMPLES:
        raise ValueError(f"loop length must be a positive multiple of {FRAME_SAMPLES} samples")
    encoder = OpusEncoderStream(bitrate=bitrate)
    prime_samples = max(len(pcm), SAMPLE_RATE)
    primer = np.tile(pcm, -(-prime_samples // len(pcm)))[-prime_samples:]
    for start in range(0, len(primer), FRAME_SAMPLES):
        encoder.encode(primer[start : start + FRAME_SAMPLES])
    packets = tuple(
        encoder.encode(pcm[start : start + FRAME_SAMPLES])
        for start in range(0, len(pcm), FRAME_SAMPLES)
    )
    return OpusClip(packets)
