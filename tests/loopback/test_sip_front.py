"""The SIP front on a real port: malformed SIP never reaches a worker or breaks anything,
routing answers before any worker is involved, and a crashed worker ends only its calls."""

from __future__ import annotations

import asyncio
import os
import signal
import socket

from tests.core.test_sip_message import ROWS, TORTURE
from tests.sip_peers import Baresip, account, free_udp_port
from voice.sip.message import parse

OPTIONS = (
    "OPTIONS sip:ping@127.0.0.1 SIP/2.0\r\n"
    "Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK-{n};rport\r\n"
    "Max-Forwards: 70\r\nFrom: <sip:t@127.0.0.1>;tag=1\r\nTo: <sip:ping@127.0.0.1>\r\n"
    "Call-ID: opt-{n}@127.0.0.1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
)
INVITE = (
    "INVITE sip:{user}@127.0.0.1 SIP/2.0\r\n"
    "Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK-i{n};rport\r\n"
    "Max-Forwards: 70\r\nFrom: <sip:t@127.0.0.1>;tag=2\r\nTo: <sip:{user}@127.0.0.1>\r\n"
    "Call-ID: inv-{n}@127.0.0.1\r\nCSeq: 1 INVITE\r\nContact: <sip:t@127.0.0.1:{port}>\r\n"
    "Content-Length: 0\r\n\r\n"
)


class Udp:
    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.setblocking(False)
        self.port = self.sock.getsockname()[1]

    async def exchange(self, data: bytes, to: int, wait: float = 0.6) -> list[bytes]:
        loop = asyncio.get_running_loop()
        self.sock.sendto(data, ("127.0.0.1", to))
        answers: list[bytes] = []
        deadline = loop.time() + wait
        while loop.time() < deadline:
            try:
                answers.append(self.sock.recv(65536))
            except BlockingIOError:
                await asyncio.sleep(0.02)
        return answers


async def test_torture_messages_get_an_error_or_nothing_and_the_front_stays_up(start_service):
    sip_port = free_udp_port()
    async with start_service(sip_port=sip_port, sip_rate_per_source=1000) as svc:
        await svc.client().sign_up("carol")
        udp = Udp()
        for row in ROWS:
            if row["category"] not in ("invalid", "application-semantics"):
                continue
            answers = await udp.exchange((TORTURE / row["file"]).read_bytes(), sip_port, 0.2)
            for answer in answers:
                status = parse(answer).status
                assert status is not None and 400 <= status < 700, (row["file"], status)
            if row["file"] in ("3.1.2.17-mismatch01.sip", "3.3.11-zeromf.sip"):
                assert answers, row["file"]  # answerable: a 400 and a 483 are owed
        # garbage of every size
        for junk in (b"\x00" * 10, b"INVITE", os.urandom(2000), b"SIP/2.0 200 OK\r\n\r\n"):
            for answer in await udp.exchange(junk, sip_port, 0.1):
                assert (parse(answer).status or 0) >= 400  # well-formed error answers only
        pong = await udp.exchange(OPTIONS.format(port=udp.port, n=1).encode(), sip_port)
        assert parse(pong[0]).status == 200
        unknown = await udp.exchange(
            INVITE.format(user="nobody", port=udp.port, n=2).encode(), sip_port
        )
        # A call to a user needs credentials first: nobody learns which users exist.
        assert [parse(a).status for a in unknown] == [100, 407]
        assert svc.runtime.sip.pool.crashed == 0
        assert all(w.alive for w in svc.runtime.sip.pool.workers)


async def test_a_crashed_worker_ends_its_calls_and_new_calls_work(start_service, tmp_path):
    sip_port = free_udp_port()
    async with start_service(sip_port=sip_port) as svc:
        dave = await svc.client().sign_up("dave")
        device = await dave.events()
        erin = await svc.client().sign_up("erin")
        await erin.ok("PUT", "/v1/me/sip-password", json={"password": "erin-desk-pw"})
        pool = svc.runtime.sip.pool
        line = account("erin", "erin-desk-pw", sip_port)
        first = Baresip(tmp_path / "one", freq=500, seconds=20, account=line)
        second = Baresip(tmp_path / "two", freq=600, seconds=20, account=line)
        try:
            await first.dial(f"sip:dave@127.0.0.1:{sip_port}")
            incoming = await device.next("call.incoming", timeout=15)
            leg = next(iter(svc.runtime.sip.legs))
            os.kill(leg.worker.pid, signal.SIGKILL)
            ended = await device.state(incoming["call_id"], "ended", timeout=15)
            assert ended["reason"] == "failed"
            await second.dial(f"sip:dave@127.0.0.1:{sip_port}")
            again = await device.next(
                "call.incoming", lambda e: e["call_id"] != incoming["call_id"], timeout=20
            )
            assert again["from"] == "erin"  # her desk phone calls as her
            assert pool.crashed == 1
            await dave.ok("POST", f"/v1/calls/{again['call_id']}/decline")
            assert (await device.state(again["call_id"], "ended"))["reason"] == "declined"
        finally:
            await first.stop()
            await second.stop()
            await dave.close()
