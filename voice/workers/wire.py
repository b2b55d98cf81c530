"""What travels between the API process and a media worker: length-prefixed pickles over a
Unix stream socket. Both ends are our own processes (the socket is a socketpair made by the
parent), so pickle is safe here and costs a few microseconds a message.

parent -> worker   ("new", rid, kind, kwargs)                   make an object; reply (id, info)
                   ("call", rid, obj, method, args, kwargs)     call it; reply its result
                   ("tell", obj, method, args, kwargs)          call it; no reply (in order)
                   ("clip", key, packets)                       keep a clip for `ClipRef(key)`
                   ("drop", obj)                                close and forget it
worker -> parent   ("ok", rid, value) | ("err", rid, (error class, message, code, status))
                   ("event", obj, name, args)                   something happened to obj
"""

from __future__ import annotations

import asyncio
import pickle
import struct
from typing import Any, NamedTuple

from voice import errors

_LENGTH = struct.Struct("!I")
MAX_MESSAGE = 64 << 20  # a 60 s clip is ~200 kB; anything near this is a bug


class Ref(NamedTuple):
    """An object living in the worker, named in an argument (e.g. `relay_to(Ref(7))`)."""

    id: int


class ClipRef(NamedTuple):
    """A clip the worker already holds (sent once with "clip"), named in an argument."""

    key: int


def pack(message: tuple[Any, ...]) -> bytes:
    body = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return _LENGTH.pack(len(body)) + body


async def read(reader: asyncio.StreamReader) -> tuple[Any, ...]:
    """The next message; IncompleteReadError when the other end has gone."""
    (length,) = _LENGTH.unpack(await reader.readexactly(_LENGTH.size))
    if length > MAX_MESSAGE:
        raise ValueError(f"a {length}-byte message from a media worker")
    return pickle.loads(await reader.readexactly(length))


def describe_error(exc: BaseException) -> tuple[str, str, str | None, int | None]:
    if isinstance(exc, errors.ChorusError):
        return type(exc).__name__, exc.message, exc.code, exc.status
    return type(exc).__name__, f"{type(exc).__name__}: {exc}", None, None


def rebuild_error(described: tuple[str, str, str | None, int | None]) -> Exception:
    """The worker's error as the parent raises it: domain errors keep their class, code and
    status (a bad offer is still a 400 `bad_sdp`); anything else is a RuntimeError."""
    name, message, code, status = described
    cls = getattr(errors, name, None)
    if isinstance(cls, type) and issubclass(cls, errors.ChorusError):
        return cls(message, code=code, status=status)
    return RuntimeError(f"media worker: {message}")
