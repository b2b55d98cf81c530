"""A business's own backend: GET a URL with the key filled in, expect a JSON object back."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx

from hotline.providers.base import ProviderError

MAX_BYTES = 64 * 1024


class HttpJsonProvider:
    def __init__(self, url_template: str, *, timeout_s: float = 2.0):
        self.url_template = url_template
        self.timeout_s = timeout_s

    async def lookup(self, key: str) -> dict[str, Any] | None:
        url = self.url_template.replace("{key}", quote(key, safe=""))
        try:
            async with httpx.AsyncClient(timeout=self.timeout_s, follow_redirects=False) as http:
                response = await http.get(url, headers={"Accept": "application/json"})
        except httpx.HTTPError as exc:
            raise ProviderError(f"backend unreachable: {type(exc).__name__}") from exc
        if response.status_code == 404:
            return None
        if response.status_code != 200 or len(response.content) > MAX_BYTES:
            raise ProviderError(f"backend answered {response.status_code}")
        try:
            data = response.json()
        except ValueError as exc:
            raise ProviderError("backend sent something that is not JSON") from exc
        if not isinstance(data, dict):
            raise ProviderError("backend sent JSON that is not an object")
        return {k: v for k, v in data.items() if isinstance(v, str | int | float)}
