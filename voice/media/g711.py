"""G.711 µ-law (PCMU) and A-law (PCMA), by table lookup: no `audioop` (gone in Python 3.13).

Pure: numpy only. Tables follow the ITU-T G.711 reference (Sun's g711.c): encoding takes the
top 14 (µ-law) or 13 (A-law) bits of a 16-bit sample; decoding gives 16-bit samples. Both
directions are one `take` over a table built once, on first use (a few ms), never at import.
A 20 ms frame (160 samples at 8 kHz) costs about a microsecond either way.
"""

from __future__ import annotations

from functools import cache

import numpy as np

PCMU = "pcmu"
PCMA = "pcma"
CODECS = (PCMU, PCMA)
SAMPLE_RATE = 8000
FRAME_SAMPLES = 160  # 20 ms
# What silence encodes to: the code for 0 (µ-law) and for the smallest positive step (A-law,
# which has no zero).
SILENCE_BYTE = {PCMU: 0xFF, PCMA: 0xD5}

_SEG_END_ULAW = np.array([0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF])
_SEG_END_ALAW = np.array([0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF])
_ULAW_BIAS = 0x84
_ULAW_CLIP = 8159


def _all_samples() -> np.ndarray:
    """Every int16 value, at the index of its uint16 bit pattern."""
    return np.arange(65536, dtype=np.uint16).view(np.int16).astype(np.int32)


@cache
def _ulaw_encode_table() -> np.ndarray:
    pcm = _all_samples() >> 2  # 14 significant bits
    mask = np.where(pcm < 0, 0x7F, 0xFF)
    magnitude = np.minimum(np.abs(pcm), _ULAW_CLIP) + (_ULAW_BIAS >> 2)
    seg = np.searchsorted(_SEG_END_ULAW, magnitude)  # first segment whose end >= magnitude
    code = (seg << 4) | ((magnitude >> (seg + 1)) & 0x0F)
    code = np.where(seg >= 8, 0x7F, code)
    return (code ^ mask).astype(np.uint8)


@cache
def _alaw_encode_table() -> np.ndarray:
    pcm = _all_samples() >> 3  # 13 significant bits
    negative = pcm < 0
    mask = np.where(negative, 0x55, 0xD5)
    magnitude = np.where(negative, -pcm - 1, pcm)
    seg = np.searchsorted(_SEG_END_ALAW, magnitude)
    shift = np.where(seg < 2, 1, seg)
    code = (np.minimum(seg, 7) << 4) | ((magnitude >> shift) & 0x0F)
    code = np.where(seg >= 8, 0x7F, code)
    return (code ^ mask).astype(np.uint8)


@cache
def _ulaw_decode_table() -> np.ndarray:
    u = ~np.arange(256, dtype=np.int32) & 0xFF
    t = (((u & 0x0F) << 3) + _ULAW_BIAS) << ((u & 0x70) >> 4)
    return np.where(u & 0x80, _ULAW_BIAS - t, t - _ULAW_BIAS).astype(np.int16)


@cache
def _alaw_decode_table() -> np.ndarray:
    a = np.arange(256, dtype=np.int32) ^ 0x55
    seg = (a & 0x70) >> 4
    t = (a & 0x0F) << 4
    t = np.where(seg == 0, t + 8, t + 0x108)
    t = np.where(seg > 1, t << np.maximum(seg - 1, 0), t)
    return np.where(a & 0x80, t, -t).astype(np.int16)


def encode_table(codec: str) -> np.ndarray:
    """uint8[65536]: the code of every int16 sample (indexed by its uint16 bit pattern)."""
    if codec == PCMU:
        return _ulaw_encode_table()
    if codec == PCMA:
        return _alaw_encode_table()
    raise ValueError(f"not a G.711 codec: {codec!r}")


def decode_table(codec: str) -> np.ndarray:
    """int16[256]: the sample each code stands for."""
    if codec == PCMU:
        return _ulaw_decode_table()
    if codec == PCMA:
        return _alaw_decode_table()
    raise ValueError(f"not a G.711 codec: {codec!r}")


def encode(codec: str, pcm: np.ndarray) -> bytes:
    """int16 samples (8 kHz) to G.711 bytes, one per sample."""
    samples = np.asarray(pcm, dtype=np.int16)
    return encode_table(codec).take(samples.view(np.uint16)).tobytes()


def decode(codec: str, payload: bytes) -> np.ndarray:
    """G.711 bytes to int16 samples (8 kHz)."""
    return decode_table(codec).take(np.frombuffer(payload, dtype=np.uint8))


def silence(codec: str, samples: int = FRAME_SAMPLES) -> bytes:
    return bytes((SILENCE_BYTE[codec],)) * samples
