"""SIP over TCP on the same port: sipp calls the hotline over TCP with RTP and hangs up;
a stream that cannot be framed gets a 400 and its connection is closed."""

from __future__ import annotations

import asyncio
import socket

from tests.service import ADMIN_KEY
from tests.sip_peers import free_udp_port
from tests.sipp import UAC_PCMU, write_pcmu_wav


def free_port() -> int:
    """A port free for both UDP and TCP."""
    while True:
        port = free_udp_port()
        with socket.socket() as tcp:
            try:
                tcp.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port


async def test_a_call_over_tcp_reaches_the_hotline_and_hangs_up_cleanly(start_service, tmp_path):
    sip_port = free_port()
    async with start_service(sip_port=sip_port) as svc:
        wav = tmp_path / "say.wav"
        write_pcmu_wav(wav, 0, 6)  # silence
        scenario = tmp_path / "uac.xml"
        scenario.write_text(UAC_PCMU.read_text().replace("__WAV__", str(wav)))
        sipp = await asyncio.create_subprocess_exec(
            "sipp", "-sf", str(scenario), "-s", "114", f"127.0.0.1:{sip_port}", "-t", "t1",
            "-i", "127.0.0.1", "-p", str(free_port()), "-mi", "127.0.0.1",
            "-mp", str(free_udp_port() & ~1), "-m", "1", "-l", "1", "-d", "3000",
            "-nostdin", "-timeout", "60", "-trace_err", "-error_file", str(tmp_path / "err"),
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL, cwd=tmp_path,
        )  # fmt: skip
        try:
            code = await asyncio.wait_for(sipp.wait(), 60)
            errors = (tmp_path / "err").read_text() if (tmp_path / "err").exists() else ""
            assert code == 0, errors[-2000:]
            assert svc.runtime.sip.front.stats["forwarded"] >= 3  # INVITE, ACK, BYE
            stats = await svc.client().ok("GET", "/v1/hotlines/114/stats", token=ADMIN_KEY)
            assert stats["calls"] == 1  # answered by the hotline, then ended by sipp's BYE
        finally:
            if sipp.returncode is None:
                sipp.kill()
                await sipp.wait()


async def test_a_stream_that_cannot_be_framed_gets_400_and_is_closed(start_service):
    sip_port = free_port()
    async with start_service(sip_port=sip_port):
        reader, writer = await asyncio.open_connection("127.0.0.1", sip_port)
        writer.write(
            b"OPTIONS sip:x@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:9;branch=z9hG4bKa\r\n"
            b"From: <sip:a@b>;tag=1\r\nTo: <sip:x@127.0.0.1>\r\nCall-ID: t1\r\n"
            b"CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\n\r\n"  # no Content-Length
        )
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(4096), 10)
        assert answer.startswith(b"SIP/2.0 400 ")
        assert await asyncio.wait_for(reader.read(4096), 10) == b""  # closed
        writer.close()
        # A well-formed OPTIONS over a new connection is answered on it.
        reader, writer = await asyncio.open_connection("127.0.0.1", sip_port)
        writer.write(
            b"OPTIONS sip:x@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:9;branch=z9hG4bKb\r\n"
            b"From: <sip:a@b>;tag=1\r\nTo: <sip:x@127.0.0.1>\r\nCall-ID: t2\r\n"
            b"CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        )
        await writer.drain()
        assert (await asyncio.wait_for(reader.read(4096), 10)).startswith(b"SIP/2.0 200 ")
        writer.close()
