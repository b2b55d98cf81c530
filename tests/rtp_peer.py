"""A plain-RTP endpoint for tests: one UDP socket, a tone out every 20 ms, everything heard kept.

It plays the part of a gateway or a trunk: sends PCMU, PCMA or Opus from the very socket it
receives on (symmetric RTP), paced by the event loop's clock, and decodes what it got back
in sequence order for spectrum checks.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import struct
import time

import numpy as np

from voice.media import g711
from voice.media.opus import OpusDecoderStream, OpusEncoderStream

RATES = {"opus": 48000, "pcmu": 8000, "pcma": 8000}
PAYLOAD_TYPES = {"opus": 111, "pcmu": 0, "pcma": 8}


class RtpPeer:
    def __init__(
        self,
        codec: str = "pcmu",
        freq: float = 1000.0,
        level: float = 0.3,
        *,
        payload_type: int | None = None,
        host: str = "127.0.0.1",
    ) -> None:
        self.codec = codec
        self.freq = freq
        self.level = level
        self.rate = RATES[codec]
        self.samples = self.rate // 50
        self.payload_type = PAYLOAD_TYPES[codec] if payload_type is None else payload_type
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((host, 0))
        self.sock.setblocking(False)
        self.host, self.port = self.sock.getsockname()
        self.ssrc = random.getrandbits(32)
        self.seq = random.getrandbits(16)
        self.ts = random.getrandbits(32)
        self.sending = True
        self.sent = 0
        self.received: list[tuple[float, int, int, int, bytes]] = []  # t, pt, seq, ts, payload
        self.raw: list[bytes] = []
        self._encoder = OpusEncoderStream(bitrate=32000) if codec == "opus" else None
        self._frame = 0
        self._task: asyncio.Task[None] | None = None
        self.server: tuple[str, int] | None = None

    def _next_payload(self) -> bytes:
        n = self.samples
        t = (self._frame * n + np.arange(n)) / self.rate
        self._frame += 1
        pcm = np.round(np.sin(2 * np.pi * self.freq * t) * self.level * 32767).astype(np.int16)
        if self._encoder is not None:
            return self._encoder.encode(pcm) or b"\xf8\xff\xfe"
        return g711.encode(self.codec, pcm)

    def start(self, server_host: str, server_port: int) -> None:
        self.server = (server_host, server_port)
        self._task = asyncio.ensure_future(self._run())

    def send_raw(self, data: bytes) -> None:
        assert self.server is not None
        self.sock.sendto(data, self.server)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        start = loop.time()
        k = 0
        while True:
            if self.sending and self.server is not None:
                pt, seq, ts = self.payload_type, self.seq, self.ts
                header = struct.pack("!BBHII", 0x80, pt, seq, ts, self.ssrc)
                with contextlib.suppress(OSError):
                    self.sock.sendto(header + self._next_payload(), self.server)
                    self.sent += 1
                self.seq = (self.seq + 1) & 0xFFFF
                self.ts = (self.ts + self.samples) & 0xFFFFFFFF
            self._drain()
            k += 1
            await asyncio.sleep(max(0.0, start + k * 0.02 - loop.time()))

    def _drain(self) -> None:
        while True:
            try:
                data, _ = self.sock.recvfrom(4096)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            self.raw.append(data)
            if len(data) < 12 or (data[1] & 0x7F) in range(72, 77):  # RTCP on the RTP port
                continue
            _, second, seq, ts, _ = struct.unpack_from("!BBHII", data)
            self.received.append((time.monotonic(), second & 0x7F, seq, ts, data[12:]))

    def received_pcm(self, since_s: float | None = None, last: int | None = None) -> np.ndarray:
        """What was heard (since `since_s`, or the `last` packets), decoded in arrival order;
        gaps in time are not filled."""
        packets = [r for r in self.received if since_s is None or r[0] >= since_s]
        if last is not None:
            packets = packets[-last:]
        if not packets:
            return np.zeros(0, np.int16)
        if self.codec == "opus":
            decoder = OpusDecoderStream()
            return np.concatenate([decoder.decode(p[4]) for p in packets])
        return np.concatenate([g711.decode(self.codec, p[4]) for p in packets])

    async def wait_packets(self, count: int, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.received) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(self.received)} of {count} packets heard")
            await asyncio.sleep(0.02)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self.sock.close()
