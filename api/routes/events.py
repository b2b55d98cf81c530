"""The events WebSocket: one per device. It says hello with the device id (which the device
passes when it answers), replays the calls in progress, then forwards the user's and the
device's events until either side goes away."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import uuid

from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from api.runtime import Runtime
from voice.errors import ChorusError, Unavailable
from voice.presence import device_channel

router = APIRouter(tags=["events"])
log = logging.getLogger("chorus.events")
DEVICE_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


@router.websocket("/v1/events")
async def events(websocket: WebSocket) -> None:
    runtime: Runtime = websocket.app.state.runtime
    token = websocket.query_params.get("token", "")
    try:
        user = await runtime.accounts.user_for_token(token)
    except Unavailable as exc:  # the database is down: not the token's fault, try again later
        await websocket.accept()
        await websocket.close(code=1013, reason=exc.message[:120])
        return
    except ChorusError:
        # Accept first: a close before the handshake reaches browsers as a bare 1006, and
        # they could not tell a bad token from a network failure.
        await websocket.accept()
        await websocket.close(code=4401, reason="invalid or expired token")
        return
    requested = websocket.query_params.get("device_id", "")
    device = requested if DEVICE_ID.match(requested) else uuid.uuid4().hex
    await websocket.accept()
    try:
        subscription = await runtime.bus.subscribe(
            f"user:{user.id}", device_channel(user.id, device)
        )
    except ChorusError as exc:  # the shared bus (Redis) is unreachable: "try again later"
        await websocket.close(code=1013, reason=exc.message[:120])
        return
    runtime.metrics.event_sockets.inc()
    forward: asyncio.Task[None] | None = None
    try:
        await websocket.send_json({"type": "hello", "device_id": device, "user": user.username})
        for event in await runtime.calls.device_connected(user, device):
            await websocket.send_json(event)

        async def pump() -> None:
            async for event in subscription:
                await websocket.send_json(event)

        forward = asyncio.create_task(pump())
        while True:
            message = await websocket.receive_json()
            if isinstance(message, dict) and message.get("type") == "ping":
                await websocket.send_json({"type": "pong"})
            elif isinstance(message, dict) and message.get("type") == "agent.state":
                try:
                    await runtime.hotline.agents.set_state(user, str(message.get("state")))
                except ChorusError as exc:
                    await websocket.send_json(
                        {"type": "error", "code": exc.code, "message": exc.message}
                    )
    except (WebSocketDisconnect, RuntimeError, ValueError):
        pass  # the device went away or sent garbage: either way this socket is done
    except ChorusError as exc:  # e.g. the bus became unreachable: the app reconnects later
        with contextlib.suppress(RuntimeError):
            await websocket.close(code=1013, reason=exc.message[:120])
    finally:
        if forward is not None:
            forward.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await forward
        await subscription.close()
        runtime.metrics.event_sockets.dec()
        with contextlib.suppress(ChorusError):
            await runtime.calls.device_disconnected(user, device)
        with contextlib.suppress(RuntimeError, WebSocketDisconnect):
            await websocket.close()
