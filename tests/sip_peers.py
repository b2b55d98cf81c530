"""Real SIP clients from Debian packages for loopback tests: baresip (calls with audio from
a WAV file, and a dump of what it heard) and sipp (scenarios, load)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import wave
from pathlib import Path

import numpy as np

from tests.audio import sine


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_wav(path: Path, pcm: np.ndarray, rate: int = 8000) -> None:
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(np.asarray(pcm, np.int16).tobytes())


def read_wav(path: Path) -> tuple[np.ndarray, int]:
    with wave.open(str(path), "rb") as source:
        rate = source.getframerate()
        data = np.frombuffer(source.readframes(source.getnframes()), np.int16)
        if source.getnchannels() > 1:
            data = data[:: source.getnchannels()]
    return data, rate


def account(
    user: str, password: str, sip_port: int, *, register: bool = False, transport: str = "udp"
) -> str:
    """A baresip account line for an app user's SIP credentials: it answers our digest
    challenges (a call to a user needs them) and, with `register`, registers."""
    interval = 60 if register else 0
    uri = f"sip:{user}@127.0.0.1:{sip_port};transport={transport}"
    return f"<{uri}>;auth_pass={password};regint={interval}"


class Baresip:
    """One baresip process dialling `uri`, saying a sine, dumping what it hears."""

    def __init__(
        self,
        workdir: Path,
        freq: float,
        seconds: float,
        codec: str = "PCMU",
        account: str | None = None,
    ) -> None:
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_udp_port()
        write_wav(self.dir / "say.wav", sine(freq, seconds, 8000, 0.4))
        rtp = 41000 + (self.port % 400) * 20
        (self.dir / "config").write_text(
            "poll_method epoll\n"
            f"sip_listen 127.0.0.1:{self.port}\n"
            "net_interface 127.0.0.1\n"
            f"rtp_ports {rtp}-{rtp + 19}\n"
            f"audio_source aufile,{self.dir / 'say.wav'}\n"
            "audio_player aufile,/dev/null\n"
            "audio_alert aufile,/dev/null\n"
            "module_path /usr/lib/baresip/modules\n"
            "module g711.so\nmodule g722.so\nmodule aufile.so\nmodule sndfile.so\n"
            "module_app account.so\nmodule_app menu.so\n"
            f"snd_path {self.dir}\n"
        )
        # `account` registers (e.g. "<sip:bob@host:port>;auth_pass=...;regint=60"); by default
        # baresip only dials.
        line = account or f"<sip:tester@127.0.0.1:{self.port}>;regint=0"
        (self.dir / "accounts").write_text(f"{line};audio_codecs={codec}\n")
        self.process: asyncio.subprocess.Process | None = None

    @staticmethod
    def available() -> bool:
        return shutil.which("baresip") is not None

    async def dial(self, uri: str, timeout_s: float = 20) -> None:
        await self.run(timeout_s, "-e", f"/dial {uri}")

    async def run(self, timeout_s: float, *commands: str) -> None:
        """Start baresip (registering its account, if it has one), running `commands`."""
        log = (self.dir / "out.log").open("wb")
        self.process = await asyncio.create_subprocess_exec(
            "baresip",
            "-f",
            str(self.dir),
            *commands,
            "-t",
            str(int(timeout_s)),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=log,
            stderr=asyncio.subprocess.STDOUT,
        )
        log.close()

    async def wait(self, timeout: float = 30) -> int:
        assert self.process is not None
        return await asyncio.wait_for(self.process.wait(), timeout)

    def heard(self) -> tuple[np.ndarray, int]:
        """The decoded audio baresip's sndfile module dumped (what the SIP party heard)."""
        dumps = sorted(self.dir.glob("*-dec.wav"))
        if not dumps:
            return np.zeros(0, np.int16), 8000
        return read_wav(dumps[-1])

    def log(self) -> str:
        path = self.dir / "out.log"
        return path.read_text(errors="replace") if path.exists() else ""

    async def stop(self) -> None:
        if self.process is not None and self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()
            await self.process.wait()


class Linphone:
    """linphonec (Debian linphone-cli) driven through its stdin: it registers with digest,
    answers by itself, says a sine from a WAV and records what it hears."""

    def __init__(self, workdir: Path, freq: float, seconds: float) -> None:
        self.dir = workdir
        (self.dir / ".local" / "share" / "linphone").mkdir(parents=True, exist_ok=True)
        self.port = free_udp_port()
        write_wav(self.dir / "say.wav", sine(freq, seconds, 8000, 0.4))
        self.recording = self.dir / "heard.wav"
        rtp = 43000 + (self.port % 300) * 20
        (self.dir / "linphonerc").write_text(
            f"[sip]\nsip_port={self.port}\nsip_tcp_port=0\nsip_tls_port=0\nipv6_enabled=0\n"
            f"[rtp]\naudio_rtp_port={rtp}-{rtp + 19}\n"
            "[video]\ncapture=0\ndisplay=0\n[sound]\nechocancellation=0\n"
        )
        self.process: asyncio.subprocess.Process | None = None

    @staticmethod
    def available() -> bool:
        return shutil.which("linphonec") is not None

    async def start(self, *commands: str) -> None:
        log = (self.dir / "out.log").open("wb")
        self.process = await asyncio.create_subprocess_exec(
            "linphonec", "-c", str(self.dir / "linphonerc"), "-d", "0",
            stdin=asyncio.subprocess.PIPE, stdout=log, stderr=asyncio.subprocess.STDOUT,
            env={**os.environ, "HOME": str(self.dir)},
        )  # fmt: skip
        log.close()
        await self.send(
            "soundcard use files", f"play {self.dir / 'say.wav'}", f"record {self.recording}",
            *commands,
        )  # fmt: skip

    async def send(self, *commands: str) -> None:
        assert self.process is not None and self.process.stdin is not None
        for command in commands:
            self.process.stdin.write(command.encode() + b"\n")
        await self.process.stdin.drain()

    def heard(self) -> tuple[np.ndarray, int]:
        if not self.recording.exists():
            return np.zeros(0, np.int16), 8000
        return read_wav(self.recording)

    def log(self) -> str:
        path = self.dir / "out.log"
        return path.read_text(errors="replace") if path.exists() else ""

    async def stop(self) -> None:
        if self.process is None or self.process.returncode is not None:
            return
        with contextlib.suppress(Exception):
            await self.send("terminate", "quit")
            await asyncio.wait_for(self.process.wait(), 5)
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()
            await self.process.wait()
