from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.service import Service, running


@pytest.fixture
async def service(tmp_path) -> AsyncIterator[Service]:
    async with running(tmp_path / "data") as svc:
        yield svc


@pytest.fixture
def start_service(tmp_path):
    """For tests that need their own settings: `async with start_service(...) as svc`."""

    @contextlib.asynccontextmanager
    async def start(**overrides: Any) -> AsyncIterator[Service]:
        data_dir = overrides.pop("data_dir", tmp_path / "data")
        async with running(data_dir, **overrides) as svc:
            yield svc

    return start
