"""Providers backed by a data document: shipped sample files (weather, business directory)
that an admin can replace by upload; the upload is stored in the database so every node
answers from the same data."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hotline.models import ProviderData
from hotline.providers.base import ProviderError
from voice.errors import BadRequest
from voice.store import Store

SHIPPED = Path(__file__).resolve().parent.parent / "data"
BUILTIN = ("weather", "directory")
CACHE_S = 5.0
MAX_ENTRIES = 100_000


def validate_document(document: Any) -> dict[str, dict[str, Any]]:
    """A data document is `{"entries": {key: {field: text or number}}}`."""
    entries = document.get("entries") if isinstance(document, dict) else None
    if not isinstance(entries, dict) or not entries:
        raise BadRequest("give {'entries': {key: {field: value}}}", code="bad_data", status=422)
    if len(entries) > MAX_ENTRIES:
        raise BadRequest(f"at most {MAX_ENTRIES} entries", code="bad_data", status=422)
    for key, fields in entries.items():
        if not isinstance(fields, dict) or not all(
            isinstance(v, str | int | float) and not isinstance(v, bool) for v in fields.values()
        ):
            raise BadRequest(
                f"entries.{key}: fields are text or numbers", code="bad_data", status=422
            )
    return entries


class DataProvider:
    def __init__(self, name: str, store: Store):
        self.name = name
        self.store = store
        self._entries: dict[str, dict[str, Any]] | None = None
        self._loaded_at = 0.0

    async def lookup(self, key: str) -> dict[str, Any] | None:
        entries = await self._load()
        found = entries.get(key.strip().lstrip("#*"))
        return dict(found) if found is not None else None

    async def replace(self, document: Any) -> int:
        entries = validate_document(document)
        text = json.dumps({"entries": entries}, ensure_ascii=False)
        async with self.store.session() as session:
            row = await session.get(ProviderData, self.name)
            if row is None:
                session.add(ProviderData(name=self.name, document=text, updated_at=_now()))
            else:
                row.document, row.updated_at = text, _now()
        self._entries, self._loaded_at = entries, time.monotonic()
        return len(entries)

    async def document(self) -> dict[str, Any]:
        return {"entries": await self._load()}

    async def _load(self) -> dict[str, dict[str, Any]]:
        if self._entries is not None and time.monotonic() - self._loaded_at < CACHE_S:
            return self._entries
        async with self.store.session() as session:
            row = await session.get(ProviderData, self.name)
            text = row.document if row else None
        try:
            if text is None:
                path = SHIPPED / f"{self.name}.json"
                text = path.read_text(encoding="utf-8") if path.exists() else '{"entries": {}}'
            document = json.loads(text)
            entries = document.get("entries", {}) if isinstance(document, dict) else {}
        except (OSError, ValueError) as exc:
            raise ProviderError(f"{self.name} data is unreadable") from exc
        self._entries, self._loaded_at = entries, time.monotonic()
        return entries


def _now() -> datetime:
    return datetime.now(UTC)
