"""Keys pressed as RFC 4733 telephone-events on a WebRTC leg, from a real aiortc client that
sends them the way a browser's RTCDTMFSender does: a hotline menu moves, the other party of
a call gets call.dtmf, and each press counts once despite its three end packets."""

from __future__ import annotations

import asyncio
import contextlib
import re
import time

from aiortc.rtp import is_rtcp

from tests.loopback.test_calls import users
from tests.loopback.test_hotline_calls import INFO_HZ, MAIN_HZ, tone_menu
from tests.peers import SinePeer
from tests.service import ADMIN_KEY
from voice.media.telephone_event import KEYS
from voice.rtp.packet import build_rtp
from voice.webrtc import WebRtcConfig, WebRtcLeg

EVENT_PT = 101
FRAME = 960  # 20 ms at 48 kHz: the browser's update interval and duration step


class KeyPeer(SinePeer):
    """A SinePeer whose offer includes telephone-event/48000 (aiortc's never does), and
    which presses keys as RFC 4733 packets in its own RTP stream: its SSRC, and one sequence
    space with its Opus packets (SRTP's replay window would drop a second one), so every
    outgoing RTP packet is renumbered on the way to the client's DTLS transport."""

    def __init__(self, freq: float = 600.0) -> None:
        super().__init__(freq)
        self.event_pt: int | None = None
        self._seq = 1000
        self._audio_ts = 0
        self._event_ts = 0

    async def offer(self, timeout: float = 10.0) -> str:
        sdp = await super().offer(timeout)
        opus = re.search(r"a=rtpmap:(\d+) opus/48000", sdp).group(1)
        sdp = re.sub(r"(m=audio \S+ \S+ [\d ]+)", rf"\1 {EVENT_PT}", sdp, count=1)
        line = f"a=rtpmap:{opus} opus/48000/2"
        return sdp.replace(line, f"{line}\r\na=rtpmap:{EVENT_PT} telephone-event/48000")

    async def accept_answer(self, sdp: str) -> None:
        await super().accept_answer(sdp)
        found = re.search(r"a=rtpmap:(\d+) telephone-event/48000", sdp)
        self.event_pt = int(found.group(1)) if found else None
        sender = self.pc.getSenders()[0]
        self._ssrc, self._transport = sender._ssrc, sender.transport
        send = self._transport._send_rtp

        async def renumbered(data: bytes) -> None:
            if not is_rtcp(data) and int.from_bytes(data[8:12], "big") == self._ssrc:
                self._audio_ts = int.from_bytes(data[4:8], "big")
                data = data[:2] + self._next_seq().to_bytes(2, "big") + data[4:]
            await send(data)

        self._transport._send_rtp = renumbered

    def _next_seq(self) -> int:
        self._seq = (self._seq + 1) & 0xFFFF
        return self._seq

    async def press(self, keys: str, frames: int = 5, lose_first: bool = False) -> None:
        """Each key: a start packet (marker), updates every 20 ms, three end packets."""
        assert self.event_pt is not None, "the answer did not accept telephone-event"
        for key in keys:
            # The event starts at the audio's current time, as in a browser.
            self._event_ts = max(self._audio_ts, self._event_ts + frames * FRAME) & 0xFFFFFFFF
            event = KEYS.index(key)
            for n in range(1, frames + 4):
                end, duration = n >= frames + 1, min(n, frames) * FRAME
                payload = bytes((event, (0x80 if end else 0) | 10)) + duration.to_bytes(2, "big")
                packet = build_rtp(
                    self.event_pt, self._next_seq(), self._event_ts, self._ssrc, payload, n == 1
                )
                if not (lose_first and n == 1):
                    try:
                        await self._transport._send_rtp(packet)
                    except ConnectionError:
                        return  # the key ended the call (a menu's hang-up option)
                await asyncio.sleep(0.02)  # paced like a sender; not waiting for anything
            await asyncio.sleep(0.1)  # between presses


@contextlib.asynccontextmanager
async def key_peers(*freqs: float):
    made = [KeyPeer(f) for f in freqs]
    try:
        yield made
    finally:
        for peer in made:
            await peer.close()


async def until(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not reached within {timeout} s")
        await asyncio.sleep(0.02)


async def test_a_leg_accepts_telephone_event_only_when_offered_and_reports_each_key_once():
    config = WebRtcConfig(media_host="127.0.0.1")
    stock, keyed = SinePeer(600), KeyPeer(600)
    plain = await WebRtcLeg.accept(await stock.offer(), config=config, label="no-events")
    leg = await WebRtcLeg.accept(await keyed.offer(), config=config, label="events")
    try:
        assert "telephone-event" not in plain.answer_sdp
        assert f"a=rtpmap:{EVENT_PT} telephone-event/48000\r\n" in leg.answer_sdp
        assert f"a=fmtp:{EVENT_PT} 0-15\r\n" in leg.answer_sdp
        keys: list[str] = []
        leg.on_dtmf = keys.append
        await keyed.accept_answer(leg.answer_sdp)
        assert await leg.wait_connected(15)
        await until(lambda: leg.packets_received > 0, 15, "the client's audio")
        await keyed.press("1#")
        await keyed.press("5", lose_first=True)  # its marker packet lost on the way
        await keyed.press("5D")
        await until(lambda: keys[-1:] == ["D"], 10, "the last key")
        assert keys == list("1#55D") and leg.keys_received == 5
        received = leg.packets_received
        await until(lambda: leg.packets_received > received + 10, 10, "audio after the keys")
    finally:
        for party in (plain, leg, stock, keyed):
            await party.close()


async def test_keys_on_the_media_reach_the_other_party_once_each(service):
    alice, bob = await users(service, "alice", "bob")
    alice_app, bob_phone = await alice.events(), await bob.events()
    async with key_peers(600.0, 1000.0) as (caller, callee):
        created = await alice.ok(
            "POST", "/v1/calls", 201, json={"to": "bob", "sdp": await caller.offer()}
        )
        assert f"a=rtpmap:{EVENT_PT} telephone-event/48000" in created["sdp"]
        await caller.accept_answer(created["sdp"])
        call_id = created["call_id"]
        await bob_phone.next("call.incoming", lambda e: e["call_id"] == call_id)
        body = {"sdp": await callee.offer(), "device_id": bob_phone.device_id}
        answered = await bob.ok("POST", f"/v1/calls/{call_id}/answer", json=body)
        await callee.accept_answer(answered["sdp"])
        await callee.wait_for_audio(600.0, timeout=20)  # bridged both ways
        await caller.wait_for_audio(1000.0, timeout=20)

        # The last key of each run only marks the end: a key repeated by its three end
        # packets would show up before it, since one leg's keys are handled in order.
        await caller.press("155#D")
        await callee.press("7*D")
        await bob_phone.next("call.dtmf", lambda e: e["digits"] == "D")
        await alice_app.next("call.dtmf", lambda e: e["digits"] == "D")
        to_bob = [e for e in bob_phone.seen if e["type"] == "call.dtmf"]
        to_alice = [e for e in alice_app.seen if e["type"] == "call.dtmf"]
        assert [e["digits"] for e in to_bob] == list("155#D")
        assert {(e["call_id"], e["from"]) for e in to_bob} == {(call_id, "alice")}
        assert [e["digits"] for e in to_alice] == list("7*D")
        assert {e["from"] for e in to_alice} == {"bob"}
        await alice.ok("POST", f"/v1/calls/{call_id}/hangup")


async def test_keys_on_the_media_move_the_hotline_menu(service):
    await tone_menu(service)
    alice = await service.client().sign_up("alice")
    alice_app = await alice.events()
    async with key_peers(600.0) as (caller,):
        created = await alice.ok(
            "POST", "/v1/calls", 201, json={"to": "hotline:5000", "sdp": await caller.offer()}
        )
        await caller.accept_answer(created["sdp"])
        await caller.wait_for_audio(MAIN_HZ, timeout=20)
        await caller.press("1")
        await caller.wait_for_audio(INFO_HZ, timeout=20)
        await caller.wait_for_audio(MAIN_HZ, timeout=20)  # info is an announcement
        await caller.press("9")
        ended = await alice_app.state(created["call_id"], "ended")
        assert ended["reason"] == "completed"
    stats = await service.client().ok("GET", "/v1/hotlines/5000/stats", token=ADMIN_KEY)
    assert stats["options_chosen"] == {"main:1": 1, "main:9": 1}
    records = await service.client().ok("GET", "/v1/hotlines/5000/calls", token=ADMIN_KEY)
    assert records[0]["path"] == ["main", "main:1", "info", "main", "main:9"]
