"""Bounded waiting for tests: poll a condition, or take the next event of a subscription,
never longer than a timeout (no fixed sleeps where a condition can be awaited)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any


async def until(
    condition: Callable[[], Awaitable[bool]], timeout: float = 5.0, every: float = 0.02
) -> None:
    deadline = time.monotonic() + timeout
    while not await condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not reached within {timeout} s")
        await asyncio.sleep(every)


async def until_heard(
    publish: Callable[[], Awaitable[Any]], subscription: Any, expected: Any, timeout: float = 10.0
) -> None:
    """Publish again and again until `subscription` hears `expected`: what is published
    before a subscription is (re)made is lost, as pub/sub is fire-and-forget."""

    async def heard() -> bool:
        await publish()
        try:
            async with asyncio.timeout(0.1):
                return await next_message(subscription) == expected
        except TimeoutError:
            return False

    await until(heard, timeout=timeout, every=0)


async def next_message(subscription: Any, timeout: float = 5.0) -> Any:
    async with asyncio.timeout(timeout):
        async for message in subscription:
            return message
    raise AssertionError("the subscription ended")
