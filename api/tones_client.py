"""The HTTP side of `chorus tones add`: a streamed multipart upload with a progress bar."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import typer

CHUNK = 256 * 1024


def upload_tone(server: str, admin_key: str, path: Path, fields: dict[str, str | None]) -> dict:
    if not path.is_file():
        raise RuntimeError("no such file")
    boundary = uuid.uuid4().hex
    size = path.stat().st_size
    head = b"".join(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
        for name, value in fields.items()
        if value
    )
    head += (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
        f'filename="{path.name}"\r\nContent-Type: application/octet-stream\r\n\r\n'
    ).encode()
    tail = f"\r\n--{boundary}--\r\n".encode()

    def body() -> Iterator[bytes]:
        yield head
        with (
            path.open("rb") as file,
            typer.progressbar(length=size, label=f"uploading {path.name}", file=None) as bar,
        ):
            while chunk := file.read(CHUNK):
                bar.update(len(chunk))
                yield chunk
        yield tail

    headers = {
        "Authorization": f"Bearer {admin_key}",
        "Content-Type": f"multipart/form-data; boundary={boundary}",
        "Content-Length": str(len(head) + size + len(tail)),
    }
    try:
        response = httpx.post(
            f"{server}/v1/ringback/tones", content=body(), headers=headers, timeout=300
        )
    except httpx.HTTPError as exc:
        raise RuntimeError(f"upload failed: {exc}") from exc
    if response.status_code != 201:
        try:
            message = response.json()["error"]["message"]
        except (ValueError, KeyError):
            message = response.text
        raise RuntimeError(f"refused ({response.status_code}): {message}")
    return response.json()
