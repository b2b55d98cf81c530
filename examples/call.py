"""A first call with Chorus, both parties in one script.

Alice calls Bob from an aiortc client that plays a 600 Hz tone; Bob's "phone" (another aiortc
client listening on the events socket) answers with 1000 Hz. Each side prints what it hears,
then Alice hangs up and both print their call history.

    .venv/bin/chorus serve &            # in another terminal
    .venv/bin/python examples/call.py --server http://127.0.0.1:8080
"""

from __future__ import annotations

import argparse
import asyncio
import fractions
import json
import time

import aioice.ice
import av
import httpx
import numpy as np
import websockets
from aiortc import AudioStreamTrack, RTCConfiguration, RTCPeerConnection, RTCSessionDescription

# The server only offers 127.0.0.1 by default; aioice leaves loopback out of its candidates.
aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: ["127.0.0.1"]


class Tone(AudioStreamTrack):
    """A microphone stand-in: a sine, 20 ms frames paced in real time."""

    def __init__(self, hz: float):
        super().__init__()
        self.hz, self.samples, self.start = hz, 0, None

    async def recv(self) -> av.AudioFrame:
        if self.start is None:
            self.start = time.monotonic()
        wait = self.start + self.samples / 48000 - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        t = (self.samples + np.arange(960)) / 48000
        pcm = (np.sin(2 * np.pi * self.hz * t) * 8000).astype(np.int16)
        frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate, frame.pts = 48000, self.samples
        frame.time_base = fractions.Fraction(1, 48000)
        self.samples += 960
        return frame


class Party:
    def __init__(self, name: str, hz: float):
        self.name, self.pc = name, RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.pc.addTrack(Tone(hz))
        self.heard: list[np.ndarray] = []
        self.listener: asyncio.Task[None] | None = None

        @self.pc.on("track")
        def on_track(track):  # type: ignore[no-untyped-def]
            self.listener = asyncio.ensure_future(self._listen(track))

    async def _listen(self, track) -> None:  # type: ignore[no-untyped-def]
        while True:
            try:
                frame = await track.recv()
            except Exception:
                return
            pcm = frame.to_ndarray().reshape(-1, len(frame.layout.channels))[:, 0]
            self.heard.append(pcm)

    async def offer(self) -> str:
        await self.pc.setLocalDescription(await self.pc.createOffer())
        return self.pc.localDescription.sdp  # complete: aiortc gathers before returning

    async def accept(self, sdp: str) -> None:
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp, "answer"))

    def loudest_hz(self, seconds: float = 1.0) -> float:
        pcm = np.concatenate(self.heard)[-int(seconds * 48000) :].astype(float)
        spectrum = np.abs(np.fft.rfft(pcm * np.hanning(len(pcm))))
        return float(np.fft.rfftfreq(len(pcm), 1 / 48000)[np.argmax(spectrum[1:]) + 1])


async def session(http: httpx.AsyncClient, name: str) -> str:
    body = {"username": name, "password": f"{name}-secret"}
    await http.post("/v1/users", json=body)  # 409 when it exists already: fine
    response = await http.post("/v1/sessions", json=body)
    response.raise_for_status()
    return response.json()["token"]


async def main(server: str) -> None:
    async with httpx.AsyncClient(base_url=server, timeout=30) as http:
        alice_token, bob_token = await session(http, "alice"), await session(http, "bob")
        alice = {"Authorization": f"Bearer {alice_token}"}
        bob = {"Authorization": f"Bearer {bob_token}"}
        await http.post("/v1/contacts", json={"username": "bob"}, headers=alice)

        ws_url = server.replace("http", "ws", 1) + f"/v1/events?token={bob_token}"
        async with websockets.connect(ws_url) as bob_phone:
            device = json.loads(await bob_phone.recv())["device_id"]
            caller, callee = Party("alice", 600), Party("bob", 1000)

            created = (
                await http.post(
                    "/v1/calls", json={"to": "bob", "sdp": await caller.offer()}, headers=alice
                )
            ).json()
            await caller.accept(created["sdp"])
            print(f"alice: calling bob, call {created['call_id']} is {created['state']}")

            while (event := json.loads(await bob_phone.recv()))["type"] != "call.incoming":
                pass
            print(f"bob's phone: {event['from']} is calling")
            await asyncio.sleep(3)
            print(f"alice hears the ring tone: {caller.loudest_hz():.0f} Hz")

            answer = await http.post(
                f"/v1/calls/{event['call_id']}/answer",
                json={"sdp": await callee.offer(), "device_id": device},
                headers=bob,
            )
            await callee.accept(answer.json()["sdp"])
            await asyncio.sleep(3)
            print(f"alice hears bob: {caller.loudest_hz():.0f} Hz")
            print(f"bob hears alice: {callee.loudest_hz():.0f} Hz")

            await http.post(f"/v1/calls/{event['call_id']}/hangup", headers=alice)
            for name, headers in (("alice", alice), ("bob", bob)):
                last = (await http.get("/v1/calls?limit=1", headers=headers)).json()[0]
                print(f"{name}'s history: {last['from']} -> {last['to']}: {last['reason']}")
            await caller.pc.close()
            await callee.pc.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--server", default="http://127.0.0.1:8080")
    asyncio.run(main(parser.parse_args().server))
