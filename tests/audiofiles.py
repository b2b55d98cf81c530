"""Audio files as users upload them, made here with PyAV: WAV, MP3, OGG/Opus, FLAC, M4A/AAC."""

from __future__ import annotations

import io
import wave

import av
import numpy as np

FORMATS = {  # extension: (container format, codec, sample rate)
    "wav": ("wav", "pcm_s16le", 44100),
    "mp3": ("mp3", "libmp3lame", 44100),
    "ogg": ("ogg", "libopus", 48000),
    "flac": ("flac", "flac", 22050),
    "m4a": ("ipod", "aac", 44100),
}


def tones_pcm(
    freqs: tuple[float, ...], seconds: float, rate: int, level: float = 0.4
) -> np.ndarray:
    t = np.arange(round(seconds * rate)) / rate
    x = sum(np.sin(2 * np.pi * f * t) for f in freqs) / len(freqs)
    return np.round(x * level * 32767).astype(np.int16)


def wav_bytes(
    freqs: tuple[float, ...], seconds: float, rate: int = 44100, channels: int = 1
) -> bytes:
    pcm = tones_pcm(freqs, seconds, rate)
    if channels == 2:
        pcm = np.repeat(pcm, 2)
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())
    return out.getvalue()


def encoded(ext: str, freqs: tuple[float, ...], seconds: float) -> bytes:
    """A file of the given kind holding `freqs`, encoded by FFmpeg through PyAV (stereo)."""
    fmt, codec, rate = FORMATS[ext]
    pcm = tones_pcm(freqs, seconds, rate)
    stereo = np.stack([pcm, pcm])
    out = io.BytesIO()
    with av.open(out, mode="w", format=fmt) as container:
        stream = container.add_stream(codec, rate=rate, layout="stereo")
        frame_size = stream.codec_context.frame_size or 1024
        fmt_name = stream.codec_context.format.name if stream.codec_context.format else "s16"
        resampler = av.AudioResampler(format=fmt_name, layout="stereo", rate=rate)
        for start in range(0, pcm.size, frame_size):
            chunk = np.ascontiguousarray(stereo[:, start : start + frame_size].T.reshape(1, -1))
            frame = av.AudioFrame.from_ndarray(chunk, format="s16", layout="stereo")
            frame.sample_rate = rate
            for converted in resampler.resample(frame):
                for packet in stream.encode(converted):
                    container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return out.getvalue()


def flac_claiming(seconds: float) -> bytes:
    """A FLAC whose STREAMINFO says it lasts `seconds` but that carries one second of audio:
    how a three-hour upload looks to the checks that run before decoding."""
    data = bytearray(encoded("flac", (440.0,), 1.0))
    assert data[:4] == b"fLaC"
    info = 8  # after the marker and the metadata block header
    rate = 22050
    bits = int.from_bytes(data[info + 10 : info + 18], "big")  # rate, channels, bps, samples
    bits = (bits & ~((1 << 36) - 1)) | round(seconds * rate)
    data[info + 10 : info + 18] = bits.to_bytes(8, "big")
    return bytes(data)
