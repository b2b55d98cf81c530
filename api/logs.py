"""Logging set-up: one line per event, and no token ever written (the events socket carries
its token in the query string, which access logs would otherwise print)."""

from __future__ import annotations

import logging
import re

_SECRET = re.compile(r"(token=|Bearer\s+)[^\s&\"']+", re.IGNORECASE)


class RedactSecrets(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if record.args:
            record.args = tuple(
                _SECRET.sub(r"\1[redacted]", a) if isinstance(a, str) else a
                for a in (record.args if isinstance(record.args, tuple) else (record.args,))
            )
        if isinstance(record.msg, str):
            record.msg = _SECRET.sub(r"\1[redacted]", record.msg)
        return True


def configure(level: str) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactSecrets())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers[:] = []
        logger.propagate = True
    # aiortc/aioice are chatty at INFO about every candidate pair.
    for name in ("aioice", "aiortc"):
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))
    # aiosqlite logs every statement twice, redis-py every pub/sub message, at DEBUG.
    for name in ("aiosqlite", "push_response"):
        logging.getLogger(name).setLevel(max(logging.INFO, root.level))
