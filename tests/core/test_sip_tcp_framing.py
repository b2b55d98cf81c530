"""Framing SIP messages on a TCP stream (pure)."""

from __future__ import annotations

import pytest

from voice.sip.message import SipError
from voice.sip.tcp import MAX_MESSAGE, frame

HEAD = b"OPTIONS sip:x@h SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK1\r\n"


def message(body: bytes = b"") -> bytes:
    return HEAD + b"Content-Length: %d\r\n\r\n" % len(body) + body


def test_messages_are_cut_by_content_length_whatever_the_chunks():
    stream = b"\r\n\r\n" + message(b"hello") + message() + message(b"x" * 100)
    found, buffer = [], b""
    for start in range(0, len(stream), 7):  # arriving 7 bytes at a time
        buffer += stream[start : start + 7]
        while True:
            one, buffer = frame(buffer)
            if one is None:
                break
            found.append(one)
    assert found == [message(b"hello"), message(), message(b"x" * 100)] and buffer == b""


def test_the_compact_form_l_counts():
    data = HEAD + b"l: 2\r\n\r\nhi" + HEAD
    assert frame(data) == (HEAD + b"l: 2\r\n\r\nhi", HEAD)


@pytest.mark.parametrize(
    "data",
    [
        HEAD + b"\r\n",  # no Content-Length on a stream
        HEAD + b"Content-Length: ten\r\n\r\n",
        HEAD + b"Content-Length: %d\r\n\r\n" % MAX_MESSAGE,
        b"x" * (MAX_MESSAGE + 1),  # never a blank line
    ],
)
def test_streams_that_cannot_be_framed_are_errors(data):
    with pytest.raises(SipError):
        frame(data)
