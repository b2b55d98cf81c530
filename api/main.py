"""The FastAPI application factory. Settings come in; nothing is built at import time."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from api import errors
from api.routes import (
    calls,
    contacts,
    events,
    hotline,
    ringback,
    rooms,
    system,
    trunks,
    users,
    web,
)
from api.runtime import Runtime
from voice.settings import Settings


def create_app(settings: Settings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime = await Runtime.start(settings)
        app.state.runtime = runtime
        try:
            yield
        finally:
            await runtime.stop()

    app = FastAPI(
        title="Chorus",
        version="0.1.0",
        summary="Self-hosted voice: calls, audio rooms, ringback tones, info hotline",
        lifespan=lifespan,
    )
    errors.install(app)
    for module in (system, users, contacts, calls, events, ringback, hotline, rooms, trunks):
        app.include_router(module.router)
    app.include_router(web.router)  # the browser app, last: API routes take precedence
    return app
