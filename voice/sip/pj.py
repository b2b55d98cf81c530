"""The pjsua2 adapter: a SIP worker process carrying at most 4 calls (the wheel's limit).

This is the only module that imports pjsua2, and only worker processes import it (forked by
`voice.sip.forkserver` for `voice.sip.pool`, or `python -m voice.sip.pj CONFIG_JSON`): any
pjsua2 misuse aborts the whole process, so it must never be the API process. A worker talks to
its parent over one SOCK_SEQPACKET socket (fd given in the config):

    parent -> worker   b"J" + JSON   answer / ring / reject / hangup / play / clip / source
                       b"A" + key(2) + Opus payload   audio the SIP party must hear
    worker -> parent   b"J" + JSON   ready / incoming / media / dtmf / ended
                       b"A" + key(2) + timestamp(4) + Opus payload   what the SIP party says

Threads (see notes/MEDIA-FACTS.md, section 3): pjsua2 runs with no thread of its own
(`threadCnt=0`) and the main thread blocks in `libHandleEvents(timeout)`, which releases the
GIL; an idle worker wakes once a second (measured ~0.05 % of a core). A second Python thread,
registered with pjlib, blocks on the parent socket and carries out its commands. Audio-port
callbacks run on pjmedia's clock thread. The worker never calls `libDestroy`: on exit it hangs
up, lets the BYEs go and leaves with `os._exit`, so no teardown order can abort it.

Audio crosses the pjsua2 boundary as 8 kHz mono 20 ms PCM, the bridge's rate (no resampling
in pjmedia for G.711), and Opus is encoded from and decoded to 8 kHz directly: telephone audio
has nothing above 4 kHz, and an 8 kHz Opus encoder costs less than half a 48 kHz one (~120 vs
~280 µs a frame here, plus ~25 µs of resampling saved). SWIG copies a `ByteVector` element by
element (1.4 ms per 20 ms frame here), so frames are read and written through the vector's
data pointer with ctypes: libstdc++'s `std::vector` is three pointers, begin first.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import logging
import os
import signal
import socket
import struct
import sys
import threading
import time
from collections import deque
from typing import Any

import numpy as np
import pjsua2 as pj

from voice.media.opus import FRAME_SAMPLES as OPUS_SAMPLES
from voice.media.opus import OpusDecoderStream, OpusEncoderStream

log = logging.getLogger("chorus.sip.worker")

RATE = 8000  # the bridge and our ports run at 8 kHz: no resampling in pjmedia for G.711
FRAME_SAMPLES = 160  # 20 ms
FRAME_BYTES = FRAME_SAMPLES * 2
AUDIO_IN = struct.Struct("!H")  # key
AUDIO_OUT = struct.Struct("!HI")  # key, RTP timestamp (48 kHz)
MAX_QUEUE = 8  # 160 ms of audio from the app side; older packets are dropped
# The SIP party's audio is narrowband G.711 already, so the encoder (SILK NB) gives up little
# at complexity 5, and costs ~40 % less than at 10: ~75 vs ~125 µs a frame here; in
# bench/sip.py (bridged, 120 calls) 0.82 vs 0.99 % of a core per call. Not judged by ear.
OPUS_COMPLEXITY = 5
PLC_FRAMES = 5  # after this many missing packets, silence instead of concealment
SILENT = np.zeros(FRAME_SAMPLES, np.int16)


def vector_bytes(vector: Any, size: int) -> bytes:
    """The first `size` bytes of a SWIG ByteVector, read through its data pointer."""
    begin = ctypes.c_void_p.from_address(int(vector.this)).value
    end = ctypes.c_void_p.from_address(int(vector.this) + 8).value
    if not begin or end is None:
        return b""
    return ctypes.string_at(begin, min(size, end - begin))


def fill_vector(vector: Any, data: bytes) -> None:
    """Copy `data` into a ByteVector already sized len(data)."""
    begin = ctypes.c_void_p.from_address(int(vector.this)).value
    ctypes.memmove(begin, data, len(data))


class Parent:
    """The socket to the API process (sends may come from any thread)."""

    def __init__(self, fd: int) -> None:
        self.sock = socket.socket(fileno=fd)
        self.sock.setblocking(True)
        self._lock = threading.Lock()

    def send_json(self, message: dict[str, Any]) -> None:
        self._send(b"J" + json.dumps(message).encode())

    def send_audio(self, key: int, timestamp: int, payload: bytes) -> None:
        self._send(b"A" + AUDIO_OUT.pack(key, timestamp & 0xFFFFFFFF) + payload)

    def _send(self, data: bytes) -> None:
        with self._lock, contextlib.suppress(OSError):
            self.sock.send(data)


class Bridge(pj.AudioMediaPort):
    """One call's audio between pjsua2 and the parent: PCM in and out, Opus to and fro."""

    def __init__(self, worker: Worker, key: int, bitrate: int) -> None:
        super().__init__()
        self.worker = worker
        self.bitrate = bitrate
        self.incoming: deque[bytes] = deque(maxlen=MAX_QUEUE)
        self.out = pj.ByteVector(FRAME_BYTES)
        self.errors = 0
        self.reset(key)
        fmt = pj.MediaFormatAudio()
        fmt.init(pj.PJMEDIA_FORMAT_PCM, RATE, 1, 20000, 16)
        self.createPort(f"chorus{key}", fmt)

    def reset(self, key: int) -> None:
        """Ready for a new call. Ports are reused, never deleted: a pjsua2 port whose
        Python side is collected while the conference bridge still knows it would call
        into a dead object."""
        self.listen = False
        self.relay = False
        self.key = key
        self.encoder = OpusEncoderStream(
            bitrate=self.bitrate, sample_rate=RATE, complexity=OPUS_COMPLEXITY
        )
        self.decoder = OpusDecoderStream(sample_rate=RATE)
        self.incoming.clear()
        self.clip: np.ndarray | None = None
        self.clip_pos = 0
        self.clip_loop = True
        self.missing = 0
        self.timestamp = 0  # at 48 kHz, Opus's RTP clock whatever the encoder's rate
        self.listen = self.worker.listening.pop(key, False)  # does the parent want our audio?

    # The clock thread calls these two, 50 times a second each.

    def onFrameReceived(self, frame: Any) -> None:
        try:
            if not self.listen or frame.type != pj.PJMEDIA_FRAME_TYPE_AUDIO:
                return  # nobody listens: no Opus encoding (the costly step)
            if frame.size < FRAME_BYTES:
                return
            pcm = np.frombuffer(vector_bytes(frame.buf, FRAME_BYTES), np.int16)
            self.timestamp += OPUS_SAMPLES
            packet = self.encoder.encode(pcm)
            self.worker.parent.send_audio(self.key, self.timestamp, packet)
        except Exception:
            self._failed("receive")

    def onFrameRequested(self, frame: Any) -> None:
        try:
            pcm = self._next_pcm()
            fill_vector(self.out, pcm.tobytes())
            frame.type = pj.PJMEDIA_FRAME_TYPE_AUDIO
            frame.buf = self.out
            frame.size = FRAME_BYTES
        except Exception:
            self._failed("send")

    def _next_pcm(self) -> np.ndarray:
        if self.relay:
            if self.incoming:
                self.missing = 0
                pcm = self.decoder.decode(self.incoming.popleft())[:FRAME_SAMPLES]
                return pcm if len(pcm) == FRAME_SAMPLES else SILENT
            self.missing += 1
            if self.missing <= PLC_FRAMES:
                return self.decoder.decode(None)[:FRAME_SAMPLES]
            return SILENT
        clip = self.clip
        if clip is None:
            return SILENT
        start = self.clip_pos
        chunk = clip[start : start + FRAME_SAMPLES]
        self.clip_pos = start + FRAME_SAMPLES
        if self.clip_pos >= len(clip):
            self.clip_pos = 0
            if not self.clip_loop:
                self.clip = None
        if len(chunk) < FRAME_SAMPLES:
            chunk = np.concatenate((chunk, SILENT[: FRAME_SAMPLES - len(chunk)]))
        return chunk

    def _failed(self, where: str) -> None:
        self.errors += 1
        if self.errors == 1:
            log.exception("call %d: audio %s failed (later failures only counted)", self.key, where)


class SipCall(pj.Call):
    def __init__(self, worker: Worker, account: pj.Account, call_id: int, key: int) -> None:
        super().__init__(account, call_id)
        self.worker = worker
        self.key = key
        self.bridge: Bridge | None = None
        self.media: Any = None
        self.ended = False
        self.outbound = False  # we dialled it (an app user calling a SIP address)
        self.progress = 0  # the last provisional status told to the parent (outbound)
        self.confirmed = False
        # what to play or relay once media is up (commands may come before the SDP does)
        self.pending: tuple[np.ndarray | None, bool, bool] | None = None

    def onCallState(self, prm: Any) -> None:
        info = self.getInfo()
        if self.outbound and not self.ended:
            if info.state == pj.PJSIP_INV_STATE_EARLY and info.lastStatusCode != self.progress:
                self.progress = info.lastStatusCode
                self.worker.parent.send_json(
                    {"t": "progress", "k": self.key, "status": info.lastStatusCode}
                )
            elif info.state == pj.PJSIP_INV_STATE_CONFIRMED and not self.confirmed:
                self.confirmed = True
                self.worker.parent.send_json({"t": "answered", "k": self.key})
        if info.state == pj.PJSIP_INV_STATE_DISCONNECTED and not self.ended:
            self.ended = True
            self.worker.call_ended(self, info.lastStatusCode, info.lastReason)

    def onCallMediaState(self, prm: Any) -> None:
        info = self.getInfo()
        for index, media in enumerate(info.media):
            if media.type == pj.PJMEDIA_TYPE_AUDIO and media.status in (
                pj.PJSUA_CALL_MEDIA_ACTIVE,
                pj.PJSUA_CALL_MEDIA_REMOTE_HOLD,
            ):
                audio = self.getAudioMedia(index)
                bridge, first = self.bridge, self.bridge is None
                if bridge is None:
                    bridge = self.worker.bridge_for(self.key)  # may make a pjsua2 port: unlocked
                    # Under the lock the command thread holds while it reads `bridge` and
                    # writes `pending` or `listening`: without it a play/source/listen coming
                    # at this moment was lost (a silent prompt, an uplink never encoded).
                    with self.worker.lock:
                        self.bridge = bridge
                        if self.key in self.worker.listening:
                            bridge.listen = self.worker.listening.pop(self.key)
                        if self.pending is not None:
                            bridge.clip, bridge.clip_loop, bridge.relay = self.pending
                            self.pending = None
                if first:
                    self.worker.parent.send_json({"t": "media", "k": self.key})
                bridge.startTransmit(audio)
                audio.startTransmit(bridge)
                self.media = audio
                return

    def onDtmfDigit(self, prm: Any) -> None:
        self.worker.parent.send_json({"t": "dtmf", "k": self.key, "digit": prm.digit})


class Account(pj.Account):
    def __init__(self, worker: Worker) -> None:
        super().__init__()
        self.worker = worker

    def onIncomingCall(self, prm: Any) -> None:
        self.worker.incoming(self, prm)


class Worker:
    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config
        self.parent = Parent(config["fd"])
        self.bitrate = int(config.get("bitrate", 32000))
        self.calls: dict[int, SipCall] = {}
        self.graveyard: list[SipCall] = []  # ended calls, dropped by the main loop
        self.lock = threading.RLock()
        self.clips: dict[str, np.ndarray] = {}
        self.clip_parts: dict[str, list[bytes]] = {}
        self.listening: dict[int, bool] = {}  # "listen" commands that came before the media
        self.spare_bridges: list[Bridge] = []
        self.trunk_accounts: dict[str, Account] = {}
        self.next_key = 1
        self.running = True
        self.ep = pj.Endpoint()
        self.ep.libCreate()
        cfg = pj.EpConfig()
        cfg.uaConfig.threadCnt = 0
        cfg.uaConfig.mainThreadOnly = False
        cfg.uaConfig.maxCalls = 4
        cfg.uaConfig.userAgent = "Chorus"
        cfg.medConfig.threadCnt = 0
        cfg.medConfig.hasIoqueue = False
        cfg.medConfig.clockRate = RATE
        cfg.medConfig.sndClockRate = RATE
        cfg.medConfig.noVad = True
        cfg.medConfig.ecTailLen = 0
        level = int(config.get("pj_log_level", 0))
        cfg.logConfig.level = level
        cfg.logConfig.consoleLevel = level
        self.ep.libInit(cfg)
        self.ep.audDevManager().setNullDev()
        self._codecs(config.get("codecs", ["PCMU/8000", "PCMA/8000", "G722/16000"]))
        transport = pj.TransportConfig()
        transport.port = 0
        transport.boundAddress = config["sip_host"]
        self.transport = self.ep.transportCreate(pj.PJSIP_TRANSPORT_UDP, transport)
        self.ep.libStart()
        self.sip_port = int(self.ep.transportGetInfo(self.transport).localName.rsplit(":", 1)[1])
        account = pj.AccountConfig()
        account.idUri = f"sip:chorus@{config['sip_host']}:{self.sip_port}"
        media = account.mediaConfig.transportConfig
        media.boundAddress = config["media_host"]
        media.publicAddress = config.get("public_host") or config["media_host"]
        media.port = int(config["rtp_port_min"])
        media.portRange = int(config["rtp_port_max"]) - int(config["rtp_port_min"])
        account.sipConfig.contactForced = (
            f"<sip:chorus@{config['sip_host']}:{self.sip_port};transport=udp>"
        )
        self.account = Account(self)
        self.account.create(account)

    def _codecs(self, wanted: list[str]) -> None:
        priorities = {name: 255 - i for i, name in enumerate(wanted)}
        for codec in self.ep.codecEnum2():
            codec_id = codec.codecId
            match = next((w for w in priorities if codec_id.startswith(w)), None)
            self.ep.codecSetPriority(codec_id, priorities[match] if match else 0)

    # -- pjsua2 callbacks (main thread, or the thread that made a pjsua2 call) -------------

    def incoming(self, account: Account, prm: Any) -> None:
        with self.lock:
            key = self.next_key
            self.next_key = self.next_key % 60000 + 1
            call = SipCall(self, account, prm.callId, key)
            self.calls[key] = call
        info = call.getInfo()
        self.parent.send_json(
            {
                "t": "incoming",
                "k": key,
                "call_id": info.callIdString,
                "from": info.remoteUri,
                "to": info.localUri,
            }
        )

    def call_ended(self, call: SipCall, status: int, reason: str) -> None:
        with self.lock:
            self.calls.pop(call.key, None)
        bridge, call.bridge = call.bridge, None
        if bridge is not None:
            bridge.listen = bridge.relay = False
            bridge.clip = None
            self.spare_bridges.append(bridge)
        self.parent.send_json({"t": "ended", "k": call.key, "status": status, "reason": reason})
        # pjsua2 forgets the call after this callback; our objects go once it returned.
        self.graveyard.append(call)

    def bridge_for(self, key: int) -> Bridge:
        with self.lock:
            if self.spare_bridges:
                bridge = self.spare_bridges.pop()
                bridge.reset(key)
                return bridge
        return Bridge(self, key, self.bitrate)

    # -- commands from the parent (the command thread) ---------------------------------------

    def command(self, message: dict[str, Any]) -> None:
        kind = message.get("t")
        if kind == "clip":
            self._clip_part(message)
            return
        if kind == "stop":
            self.running = False
            return
        if kind == "dial":
            self._dial(int(message["k"]), str(message["uri"]), message.get("auth"))
            return
        call = self.calls.get(int(message.get("k", 0)))
        if call is None or call.ended:
            return
        try:
            if kind == "ring":
                op = pj.CallOpParam()
                op.statusCode = 183 if message.get("early") else 180
                call.answer(op)
            elif kind == "answer":
                op = pj.CallOpParam()
                op.statusCode = 200
                call.answer(op)
            elif kind in ("reject", "hangup"):
                op = pj.CallOpParam()
                op.statusCode = int(message.get("status", 603 if kind == "reject" else 200))
                if message.get("reason"):
                    op.reason = str(message["reason"])
                call.hangup(op)
            elif kind in ("play", "source", "listen"):
                with self.lock:  # see SipCall.onCallMediaState; no pjsua2 call in here
                    self._media_command(call, kind, message)
            elif kind == "dtmf":
                call.dialDtmf(str(message.get("digits", "")))
        except pj.Error as exc:
            log.warning("call %d: %s failed: %s", call.key, kind, exc.info())

    def _media_command(self, call: SipCall, kind: str, message: dict[str, Any]) -> None:
        """What the call plays, relays or encodes; kept for later until its media is up."""
        bridge = call.bridge
        if kind == "play":
            clip = self.clips.get(message.get("clip") or "")
            loop = bool(message.get("loop", True))
            if bridge is None:
                call.pending = (clip, loop, False)
            else:
                bridge.relay = False
                bridge.clip, bridge.clip_pos, bridge.clip_loop = clip, 0, loop
        elif kind == "source":
            relay = bool(message.get("relay"))
            if bridge is None:
                clip, loop, _ = call.pending or (None, True, False)
                call.pending = (clip, loop, relay)
            else:
                bridge.incoming.clear()
                bridge.relay = relay
        elif bridge is None:
            self.listening[call.key] = bool(message.get("on"))
        else:
            bridge.listen = bool(message.get("on"))

    def _dial(self, key: int, uri: str, auth: dict[str, str] | None = None) -> None:
        """An outbound call. It is sent to the SIP front (the target URI), which routes it to
        `uri` and records the route, so the whole dialog passes the front like inbound ones;
        X-Chorus-Dial tells the front which of the parent's dials this is. With `auth` (a
        trunk's credentials) it goes out of an account that answers digest challenges, with
        the front as its outbound proxy, so the digest covers the real request URI."""
        account = self.account if not auth else self._trunk_account(auth)
        with self.lock:
            call = SipCall(self, account, pj.PJSUA_INVALID_ID, key)
            call.outbound = True
            self.calls[key] = call
        prm = pj.CallOpParam(True)
        if not auth:
            prm.txOption.targetUri = f"sip:{self.config['sip_host']}:{self.config['front_port']}"
        header = pj.SipHeader()
        header.hName = "X-Chorus-Dial"
        header.hValue = str(key)
        prm.txOption.headers.append(header)
        try:
            call.makeCall(uri, prm)
        except pj.Error as exc:
            with self.lock:
                self.calls.pop(key, None)
            call.ended = True
            self.graveyard.append(call)
            self.parent.send_json({"t": "ended", "k": key, "status": 400, "reason": exc.reason})

    def _trunk_account(self, auth: dict[str, str]) -> Account:
        """One pjsua2 account per trunk credentials, made on first use and kept."""
        name = f"{auth['username']}\n{auth['password']}"
        account = self.trunk_accounts.get(name)
        if account is not None:
            return account
        config = self.config
        cfg = pj.AccountConfig()
        cfg.idUri = f"sip:{auth['username']}@{config['sip_host']}:{self.sip_port}"
        cfg.priority = -1  # never chosen for incoming calls
        cfg.sipConfig.proxies.append(f"sip:{config['sip_host']}:{config['front_port']};lr")
        cfg.sipConfig.contactForced = f"<sip:chorus@{config['sip_host']}:{self.sip_port}>"
        cfg.sipConfig.authCreds.append(
            pj.AuthCredInfo("digest", "*", auth["username"], 0, auth["password"])
        )
        media = cfg.mediaConfig.transportConfig
        media.boundAddress = config["media_host"]
        media.publicAddress = config.get("public_host") or config["media_host"]
        media.port = int(config["rtp_port_min"])
        media.portRange = int(config["rtp_port_max"]) - int(config["rtp_port_min"])
        account = Account(self)
        account.create(cfg)
        self.trunk_accounts[name] = account
        return account

    def audio(self, key: int, payload: bytes) -> None:
        call = self.calls.get(key)
        if call is not None and call.bridge is not None and call.bridge.relay:
            call.bridge.incoming.append(payload)

    def _clip_part(self, message: dict[str, Any]) -> None:
        name = str(message["clip"])
        parts = self.clip_parts.setdefault(name, [])
        parts.extend(bytes.fromhex(p) for p in message.get("packets", []))
        if not message.get("last"):
            return
        decoder = OpusDecoderStream(sample_rate=RATE)
        pcm = [decoder.decode(packet)[:FRAME_SAMPLES] for packet in self.clip_parts.pop(name)]
        pcm = [frame for frame in pcm if len(frame) == FRAME_SAMPLES]
        if len(self.clips) >= 16:
            self.clips.pop(next(iter(self.clips)))
        # decoded once, at the bridge's rate; every call playing it only slices it
        self.clips[name] = np.concatenate(pcm) if pcm else SILENT

    # -- threads ----------------------------------------------------------------------------

    def read_commands(self) -> None:
        self.ep.libRegisterThread("commands")
        sock = self.parent.sock
        while self.running:
            try:
                data = sock.recv(1 << 20)
            except OSError:
                data = b""
            if not data:
                self.running = False  # the parent went away
                return
            try:
                if data[:1] == b"A":
                    (key,) = AUDIO_IN.unpack_from(data, 1)
                    self.audio(key, data[1 + AUDIO_IN.size :])
                elif data[:1] == b"J":
                    self.command(json.loads(data[1:]))
            except Exception:
                log.exception("bad command from the parent")

    def run(self) -> None:
        self.parent.send_json({"t": "ready", "sip_port": self.sip_port, "pid": os.getpid()})
        reader = threading.Thread(target=self.read_commands, name="commands", daemon=True)
        reader.start()
        while self.running:
            # Blocks (GIL released) until SIP traffic or a pjsip timer; short while calls
            # run so timers set from the command thread are not late.
            self.ep.libHandleEvents(100 if self.calls else 1000)
            if self.graveyard:
                del self.graveyard[:]
        self.shutdown()

    def shutdown(self) -> None:
        with contextlib.suppress(pj.Error):
            self.ep.hangupAllCalls()
        deadline = time.monotonic() + 0.5
        while time.monotonic() < deadline:
            self.ep.libHandleEvents(20)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


def die_with_parent() -> None:
    """The kernel kills this process when the one that started it dies (Linux)."""
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def serve(config: dict[str, Any]) -> None:
    """Run one worker until it stops; never returns. Called in a child of
    `voice.sip.forkserver` (or by `main` for a worker started on its own)."""
    die_with_parent()
    logging.basicConfig(
        level=config.get("log_level", "WARNING").upper(),
        format=f"sip-worker[{os.getpid()}] %(levelname)s %(message)s",
        force=True,
    )
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    Worker(config).run()
    os._exit(0)


def main() -> None:
    serve(json.loads(sys.argv[1]))


if __name__ == "__main__":
    main()
