"""Streaming multipart uploads with a hard size limit.

FastAPI's `UploadFile` would first spool the whole body (a 1 GB upload fills the disk before
any check runs). Here the body is parsed as it arrives: the file part goes to a temporary
file and the request is refused the moment it passes the limit."""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

from fastapi import Request
from python_multipart.multipart import MultipartParser, parse_options_header

from voice.errors import BadRequest

MAX_FIELD_BYTES = 4096


@dataclass
class Upload:
    fields: dict[str, str] = field(default_factory=dict)
    path: Path | None = None
    filename: str | None = None
    size: int = 0


class _TooLarge(Exception):
    pass


@contextlib.asynccontextmanager
async def receive(
    request: Request, *, max_bytes: int, file_field: str = "file"
) -> AsyncIterator[Upload]:
    """Parses a multipart/form-data request; the temporary file is removed on exit."""
    content_type, params = parse_options_header(request.headers.get("content-type", ""))
    boundary = params.get(b"boundary")
    if content_type != b"multipart/form-data" or not boundary:
        raise BadRequest("send the file as multipart/form-data", code="bad_upload", status=422)
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > max_bytes + 64 * 1024:
        raise _too_large(max_bytes)

    upload = Upload()
    with tempfile.TemporaryDirectory(prefix="chorus-upload-") as tmp:
        target = Path(tmp) / "upload"
        state: dict = {
            "headers": {},
            "name": None,
            "buffer": bytearray(),
            "file": None,
            "field": b"",
        }

        def on_header_field(data: bytes, start: int, end: int) -> None:
            state["field"] += data[start:end]

        def on_header_value(data: bytes, start: int, end: int) -> None:
            state["headers"][state["field"].lower()] = (
                state["headers"].get(state["field"].lower(), b"") + data[start:end]
            )

        def on_header_end() -> None:
            state["field"] = b""

        def on_headers_finished() -> None:
            _, disposition = parse_options_header(state["headers"].get(b"content-disposition", b""))
            state["name"] = disposition.get(b"name", b"").decode("utf-8", "replace")
            if state["name"] == file_field:
                upload.filename = disposition.get(b"filename", b"").decode("utf-8", "replace")
                upload.path = target
                state["file"] = target.open("wb")

        def on_part_data(data: bytes, start: int, end: int) -> None:
            chunk = data[start:end]
            if state["file"] is not None:
                upload.size += len(chunk)
                if upload.size > max_bytes:
                    raise _TooLarge
                state["file"].write(chunk)
            else:
                state["buffer"] += chunk
                if len(state["buffer"]) > MAX_FIELD_BYTES:
                    raise BadRequest(
                        f"form field {state['name']!r} is too long", code="bad_upload", status=422
                    )

        def on_part_end() -> None:
            if state["file"] is not None:
                state["file"].close()
                state["file"] = None
            elif state["name"]:
                upload.fields[state["name"]] = state["buffer"].decode("utf-8", "replace")
            state.update(headers={}, name=None, buffer=bytearray())

        parser = MultipartParser(
            boundary,
            {
                "on_header_field": on_header_field,
                "on_header_value": on_header_value,
                "on_header_end": on_header_end,
                "on_headers_finished": on_headers_finished,
                "on_part_data": on_part_data,
                "on_part_end": on_part_end,
            },
        )
        try:
            async for chunk in request.stream():
                parser.write(chunk)
            parser.finalize()
        except _TooLarge:
            raise _too_large(max_bytes) from None
        except BadRequest:
            raise
        except Exception as exc:  # the multipart parser's own errors: malformed body
            raise BadRequest(
                "the upload is not valid multipart/form-data", code="bad_upload", status=422
            ) from exc
        finally:
            if state["file"] is not None:
                state["file"].close()
        if upload.path is None or upload.size == 0:
            raise BadRequest(
                f"no {file_field!r} in the upload, or it is empty", code="bad_audio", status=422
            )
        yield upload


def _too_large(max_bytes: int) -> BadRequest:
    error = BadRequest(
        f"the file is larger than the {max_bytes // (1024 * 1024)} MB limit",
        code="file_too_large",
        status=422,
    )
    error.close_connection = True
    return error
