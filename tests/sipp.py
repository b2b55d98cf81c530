"""sipp scenarios written for a test, and running sipp as a UAC against a Chorus server."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np

from tests.sip_peers import free_udp_port
from voice.media import g711

UAC_PCMU = Path(__file__).resolve().parents[1] / "bench" / "sip" / "uac_pcmu.xml"

HEAD = """      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch];rport
      From: "sipp" <sip:{user}@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>{to_tag}
      Call-ID: [call_id]
      CSeq: {cseq}
      Contact: <sip:{user}@[local_ip]:[local_port]>
      Max-Forwards: 70{extra}"""

SDP = """      v=0
      o=user1 1 1 IN IP[local_ip_type] [local_ip]
      s=-
      c=IN IP[media_ip_type] [media_ip]
      t=0 0
      m=audio [media_port] RTP/AVP 0 101
      a=rtpmap:0 PCMU/8000
      a=rtpmap:101 telephone-event/8000
      a=fmtp:101 0-15
"""


def request(
    method: str, cseq: int, *, user: str = "sipp", body: str = "", extra: str = "",
    in_dialog: bool = False, retrans: bool = True,
) -> str:  # fmt: skip
    head = HEAD.format(
        user=user,
        to_tag="[peer_tag_param]" if in_dialog else "",
        cseq=f"{cseq} {method}",
        extra=extra,
    )
    typed = "\n      Content-Type: application/sdp" if body else ""
    attr = ' retrans="500"' if retrans else ""
    return (
        f"  <send{attr}><![CDATA[\n      {method} sip:[service]@[remote_ip]:[remote_port] SIP/2.0\n"
        f"{head}{typed}\n      Content-Length: [len]\n\n{body}    ]]></send>\n"
    )


def scenario(*parts: str) -> str:
    return (
        '<?xml version="1.0" encoding="ISO-8859-1" ?>\n<scenario name="test">\n'
        + "".join(parts)
        + "</scenario>\n"
    )


def write_pcmu_wav(path: Path, freq: float, seconds: float) -> None:
    """A PCMU WAV for sipp's rtp_stream (a sine; 0 Hz: silence)."""
    t = np.arange(round(8000 * seconds)) / 8000
    data = g711.encode("pcmu", np.round(np.sin(2 * np.pi * freq * t) * 0.4 * 32767))
    fmt = (7).to_bytes(2, "little") + (1).to_bytes(2, "little") + (8000).to_bytes(4, "little")
    fmt += (8000).to_bytes(4, "little") + (1).to_bytes(2, "little") + (8).to_bytes(2, "little")
    body = b"WAVE" + b"fmt " + len(fmt).to_bytes(4, "little") + fmt
    body += b"data" + len(data).to_bytes(4, "little") + data
    path.write_bytes(b"RIFF" + len(body).to_bytes(4, "little") + body)


async def run(
    workdir: Path,
    xml: str,
    service: str,
    sip_port: int,
    *extra: str,
    calls: int = 1,
    timeout: float = 60,
) -> tuple[int, str]:
    """Run `calls` calls of `xml` (all at once) against 127.0.0.1:`sip_port`; (exit code,
    sipp's error log)."""
    path = workdir / f"{service}-{free_udp_port()}.xml"
    path.write_text(xml)
    errors = path.with_suffix(".err")
    process = await asyncio.create_subprocess_exec(
        "sipp", "-sf", str(path), "-s", service, f"127.0.0.1:{sip_port}",
        "-i", "127.0.0.1", "-p", str(free_udp_port()), "-mi", "127.0.0.1",
        "-mp", str(free_udp_port() & ~1), "-m", str(calls), "-l", str(calls), "-nostdin",
        "-timeout", str(int(timeout)), "-trace_err", "-error_file", str(errors), *extra,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL, cwd=workdir,
    )  # fmt: skip
    try:
        code = await asyncio.wait_for(process.wait(), timeout + 10)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    return code, errors.read_text(errors="replace") if errors.exists() else ""
