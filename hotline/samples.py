"""The sample hotlines shipped with Chorus: 12580 in Chinese, 114 in English (weather,
business directory and an operator queue), installed on first start so a fresh server has
something to call."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from voice.errors import Conflict

log = logging.getLogger("chorus.hotline")
DATA = Path(__file__).resolve().parent / "data"
SAMPLES = ("12580", "114")


async def install_samples(hotline: Any) -> None:
    present = {number for number, _ in await hotline.numbers()}
    for number in SAMPLES:
        if number in present:
            continue
        document = json.loads((DATA / f"sample-{number}.json").read_text(encoding="utf-8"))
        try:
            await hotline.publish(number, document)
        except Conflict:
            continue  # another node starting at the same moment installed it
        log.info("installed the sample hotline %s", number)
