"""A real Chorus server in the test's event loop, and a small API client for tests."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import uvicorn
import websockets

from api.main import create_app
from voice.settings import Settings

ADMIN_KEY = "test-admin-key"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Service:
    settings: Settings
    base_url: str
    app: Any

    @property
    def runtime(self) -> Any:
        return self.app.state.runtime

    def client(self, token: str | None = None) -> Client:
        return Client(self, token)


@contextlib.asynccontextmanager
async def running(data_dir: Path, **overrides: Any) -> AsyncIterator[Service]:
    overrides.setdefault("sip_port", 0)  # SIP (worker processes) only where a test asks
    settings = Settings(data_dir=data_dir, port=free_port(), admin_key=ADMIN_KEY, **overrides)
    app = create_app(settings)
    config = uvicorn.Config(app, host="127.0.0.1", port=settings.port, log_config=None)
    server = uvicorn.Server(config)
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    task = asyncio.create_task(server.serve())
    for _ in range(400):
        if server.started or task.done():
            break
        await asyncio.sleep(0.025)
    if not server.started:
        await task
        raise RuntimeError("the test server did not start")
    try:
        yield Service(settings, f"http://127.0.0.1:{settings.port}", app)
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 30)


@dataclass
class Client:
    service: Service
    token: str | None = None
    username: str | None = None
    sockets: list[Events] = field(default_factory=list)

    def _headers(self, token: str | None) -> dict[str, str]:
        token = token if token is not None else self.token
        return {"Authorization": f"Bearer {token}"} if token else {}

    async def request(
        self, method: str, path: str, *, token: str | None = None, **kwargs: Any
    ) -> httpx.Response:
        async with httpx.AsyncClient(base_url=self.service.base_url, timeout=30) as http:
            headers = {**self._headers(token), **kwargs.pop("headers", {})}
            return await http.request(method, path, headers=headers, **kwargs)

    async def ok(self, method: str, path: str, status: int = 200, **kwargs: Any) -> Any:
        response = await self.request(method, path, **kwargs)
        assert response.status_code == status, (response.status_code, response.text)
        return response.json() if response.content else None

    async def sign_up(self, username: str, password: str = "secret-pw", **extra: Any) -> Client:
        await self.ok(
            "POST", "/v1/users", 201, json={"username": username, "password": password, **extra}
        )
        session = await self.ok(
            "POST", "/v1/sessions", json={"username": username, "password": password}
        )
        self.token, self.username = session["token"], username
        return self

    async def events(self, device_id: str | None = None) -> Events:
        url = self.service.base_url.replace("http", "ws", 1) + f"/v1/events?token={self.token}"
        if device_id:
            url += f"&device_id={device_id}"
        events = Events(await websockets.connect(url))
        hello = await events.next("hello")
        events.device_id = hello["device_id"]
        self.sockets.append(events)
        return events

    async def close(self) -> None:
        for events in self.sockets:
            await events.close()


class Events:
    """One device's event socket; keeps every event so tests can wait for a matching one."""

    def __init__(self, ws: Any):
        self.ws = ws
        self.device_id = ""
        self.seen: list[dict[str, Any]] = []
        self._new = asyncio.Event()
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        with contextlib.suppress(websockets.ConnectionClosed):
            async for raw in self.ws:
                self.seen.append(json.loads(raw))
                self._new.set()

    async def next(
        self,
        type_: str,
        where: Callable[[dict[str, Any]], bool] = lambda e: True,
        timeout: float = 20,
    ) -> dict[str, Any]:
        """The first event of this type matching `where` (already seen or still to come)."""
        async with asyncio.timeout(timeout):
            while True:
                for event in self.seen:
                    if event.get("type") == type_ and where(event):
                        return event
                self._new.clear()
                await self._new.wait()

    async def state(self, call_id: str, state: str, timeout: float = 20) -> dict[str, Any]:
        return await self.next(
            "call.state", lambda e: e["call_id"] == call_id and e["state"] == state, timeout
        )

    async def close(self) -> None:
        await self.ws.close()
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader
