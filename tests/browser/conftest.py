"""Fixtures for real-browser tests: one server and two Chromiums (each with its own tone as
microphone) for the whole run; every test opens fresh browser contexts and new users, so tests
stay independent while the slow start-ups happen once."""

from __future__ import annotations

import itertools
import os
from collections.abc import AsyncIterator
from typing import Any

import playwright.async_api as playwright_api
import pytest
import pytest_asyncio

from tests.browser.harness import (
    CHROMIUM,
    TONE_A_HZ,
    TONE_B_HZ,
    TONE_C_HZ,
    Server,
    launch,
    write_tone,
)

if not os.path.exists(CHROMIUM):  # a missing browser fails the run; it is never skipped
    raise RuntimeError(f"no Chromium at {CHROMIUM}: scripts/system-packages.sh installs it")

_names = itertools.count(1)


@pytest.fixture
def name(request) -> Any:
    """unique usernames: name('alice') -> 'alice-3-t'."""
    serial = next(_names)
    return lambda base: f"{base}-{serial}-{os.getpid() % 1000}"


@pytest_asyncio.fixture(loop_scope="session", scope="session")
async def server(tmp_path_factory) -> AsyncIterator[Server]:
    server = Server(tmp_path_factory.mktemp("chorus") / "data")
    try:
        await server.start()
        yield server
    finally:
        await server.stop()


@pytest_asyncio.fixture(loop_scope="session", scope="session")
async def playwright() -> AsyncIterator[Any]:
    async with playwright_api.async_playwright() as pw:
        yield pw


@pytest_asyncio.fixture(loop_scope="session", scope="session")
async def browser_a(playwright, tmp_path_factory) -> AsyncIterator[Any]:
    wav = write_tone(tmp_path_factory.mktemp("tones") / f"a-{TONE_A_HZ}.wav", TONE_A_HZ)
    browser = await launch(playwright, wav)
    yield browser
    await browser.close()


@pytest_asyncio.fixture(loop_scope="session", scope="session")
async def browser_b(playwright, tmp_path_factory) -> AsyncIterator[Any]:
    wav = write_tone(tmp_path_factory.mktemp("tones") / f"b-{TONE_B_HZ}.wav", TONE_B_HZ)
    browser = await launch(playwright, wav)
    yield browser
    await browser.close()


@pytest_asyncio.fixture(loop_scope="session", scope="session")
async def browser_c(playwright, tmp_path_factory) -> AsyncIterator[Any]:
    """A third browser (rooms), started only by the tests that need it."""
    wav = write_tone(tmp_path_factory.mktemp("tones") / f"c-{TONE_C_HZ}.wav", TONE_C_HZ)
    browser = await launch(playwright, wav)
    yield browser
    await browser.close()
