"""SIP over TCP (RFC 3261 18.3): the front's stream side.

A TCP connection carries a stream of messages, each framed by its Content-Length (which is
mandatory on streams). `frame` cuts one off a buffer (pure); `TcpSide` accepts connections on
the SIP port, hands each whole message to the front exactly like a datagram, and sends the
front's messages for a peer back over that peer's connection (responses, and requests to a
phone registered over TCP). A stream that cannot be framed (no Content-Length, oversized,
garbage) gets a 400 and is closed: after a framing error nothing more of it can be trusted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from voice.sip.message import SipError, best_effort_response

log = logging.getLogger("chorus.sip")

MAX_MESSAGE = 65536
Address = tuple[str, int]


def frame(buffer: bytes) -> tuple[bytes | None, bytes]:
    """The first whole message of `buffer` and the rest; (None, buffer) while incomplete."""
    buffer = buffer.lstrip(b"\r\n")  # CRLF keep-alives between messages (RFC 5626 4.4.1)
    end = buffer.find(b"\r\n\r\n")
    if end < 0:
        if len(buffer) > MAX_MESSAGE:
            raise SipError(413, "Message Too Large")
        return None, buffer
    length = None
    for line in buffer[:end].split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() in (b"content-length", b"l"):
            try:
                length = int(value.strip())
            except ValueError:
                raise SipError(400, "Bad Content-Length") from None
    if length is None or length < 0:
        raise SipError(400, "Content-Length Is Required On TCP")
    total = end + 4 + length
    if total > MAX_MESSAGE:
        raise SipError(413, "Message Too Large")
    if len(buffer) < total:
        return None, buffer
    return buffer[:total], buffer[total:]


class TcpSide:
    def __init__(self, deliver: Callable[[bytes, Address], None]) -> None:
        self.deliver = deliver
        self.connections: dict[Address, asyncio.StreamWriter] = {}
        self._server: asyncio.Server | None = None

    async def listen(self, host: str, port: int) -> None:
        self._server = await asyncio.start_server(self._serve, host, port, limit=MAX_MESSAGE)

    def send(self, address: Address, data: bytes) -> bool:
        """Send over `address`'s connection; False when it has none (then it is UDP)."""
        writer = self.connections.get(address)
        if writer is None or writer.is_closing():
            return False
        writer.write(data)
        return True

    def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in list(self.connections.values()):
            writer.close()
        self.connections.clear()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        address: Address = writer.get_extra_info("peername")[:2]
        self.connections[address] = writer
        buffer = b""
        try:
            while True:
                chunk = await reader.read(MAX_MESSAGE)
                if not chunk:
                    return
                buffer += chunk
                while True:
                    message, buffer = frame(buffer)
                    if message is None:
                        break
                    self.deliver(message, address)
        except SipError as exc:
            log.info("SIP/TCP from %s:%d closed: %s", *address, exc.reason)
            answer = best_effort_response(buffer, exc)
            if answer is not None:
                writer.write(answer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            if self.connections.get(address) is writer:
                del self.connections[address]
            with contextlib.suppress(Exception):
                writer.close()
