"""Decode any audio file PyAV (FFmpeg) can read into 48 kHz mono int16, defensively: the
input is whatever a user uploaded."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np

from voice.errors import ChorusError

RATE = 48000


class BadAudio(ChorusError):
    status, code = 422, "bad_audio"


def decode_audio(path: Path, *, keep_s: float, longest_s: float) -> np.ndarray:
    """The first `keep_s` seconds of the file's first audio stream, mono, 48 kHz, int16.

    Files longer than `longest_s` (when the container says so) are refused before decoding:
    a three-hour upload is a mistake, not a ringback tone."""
    try:
        container = av.open(str(path), mode="r", metadata_errors="ignore")
    except (av.error.FFmpegError, UnicodeDecodeError, ValueError) as exc:
        raise BadAudio("not an audio file we can read (WAV, MP3, OGG/Opus, M4A/AAC, FLAC)") from exc
    with container:
        streams = container.streams.audio
        if not streams:
            raise BadAudio("the file has no audio stream")
        stream = streams[0]
        length = _length_s(container, stream)
        if length is not None and length > longest_s:
            raise BadAudio(
                f"the audio is {length / 60:.0f} min long; the limit is {longest_s:.0f} s"
            )
        resampler = av.AudioResampler(format="s16", layout="mono", rate=RATE)
        chunks: list[np.ndarray] = []
        wanted = round(keep_s * RATE)
        have = 0
        try:
            for frame in container.decode(stream):
                for out in resampler.resample(frame):
                    chunk = out.to_ndarray().reshape(-1)
                    chunks.append(chunk)
                    have += len(chunk)
                if have >= wanted:
                    break
            else:
                for out in resampler.resample(None):
                    chunks.append(out.to_ndarray().reshape(-1))
        except (av.error.FFmpegError, ValueError) as exc:
            if not chunks:
                raise BadAudio("the audio could not be decoded (corrupt or unsupported)") from exc
            # A truncated file: keep what decoded, as players do.
    if not chunks:
        raise BadAudio("the file holds no audio")
    pcm = np.concatenate(chunks)[:wanted].astype(np.int16, copy=False)
    if len(pcm) < RATE // 10:
        raise BadAudio("the audio is shorter than 0.1 s")
    return pcm


def _length_s(container: av.container.InputContainer, stream: av.audio.AudioStream) -> float | None:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / av.time_base
    return None
