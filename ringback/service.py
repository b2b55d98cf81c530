"""The ringback service: subscribers' settings, the tone for each call, and `*` to copy.

It implements the ports `voice` declares (`RingbackSource`, `DtmfListener`), so the call
controller plays whatever this service selects without knowing about catalogs or rules."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime

from ringback import rules
from ringback.box import ToneBox
from ringback.catalog import Catalog
from ringback.models import Setting
from voice.bus import Bus
from voice.clips import ClipLibrary
from voice.errors import BadRequest, ChorusError
from voice.media.opus import OpusClip
from voice.store import Store

log = logging.getLogger("chorus.ringback")
PLAYING_TTL_S = 3600.0


class RingbackService:
    def __init__(
        self,
        *,
        store: Store,
        bus: Bus,
        clips: ClipLibrary,
        catalog: Catalog,
        box: ToneBox,
        fallback: Callable[[], OpusClip],
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ):
        self.store = store
        self.bus = bus
        self.clips = clips
        self.catalog = catalog
        self.box = box
        self.fallback = fallback
        self.clock = clock

    # ------------------------------------------------------------------------ settings

    async def setting(self, user_id: str) -> rules.RingbackSetting:
        async with self.store.session() as session:
            row = await session.get(Setting, user_id)
            if row is None:
                return rules.RingbackSetting()
            document = json.loads(row.document)
        # Stored settings were valid when written; tones deleted since are skipped at
        # selection time, so parse without the "must exist" checks.
        return _trusted(document)

    async def put_setting(self, user_id: str, document: dict) -> rules.RingbackSetting:
        known_tones = {item.tone.tone_id for item in await self.box.items(user_id)}
        known_groups = {c.group for c in await self.store.contacts(user_id) if c.group}
        try:
            setting = rules.parse_setting(
                document, known_tones=known_tones, known_groups=known_groups
            )
        except rules.RuleError as exc:
            raise BadRequest(str(exc), code="invalid_setting", status=422) from exc
        now = self.clock()
        async with self.store.session() as session:
            row = await session.get(Setting, user_id)
            text = json.dumps(rules.to_document(setting))
            if row is None:
                session.add(Setting(user_id=user_id, document=text, rotation=0, updated_at=now))
            else:
                row.document, row.updated_at = text, now
        return setting

    async def choose(
        self, callee_id: str, caller_id: str | None, *, advance: bool
    ) -> rules.Selection:
        """What this caller would hear calling this callee now. `advance` moves the shuffle
        rotation on (a real call); previews leave it alone."""
        setting = await self.setting(callee_id)
        now = self.clock()
        usable = [i.tone.tone_id for i in await self.box.items(callee_id) if i.usable(now)]
        caller = await self.store.user_by_id(caller_id) if caller_id else None
        group = await self.store.contact_group(callee_id, caller_id) if caller_id else None
        async with self.store.session() as session:
            row = await session.get(Setting, callee_id)
            rotation = row.rotation if row else 0
            selection = rules.select(
                setting,
                caller=caller.username if caller else None,
                caller_group=group,
                now=now,
                usable=usable,
                rotation=rotation,
            )
            if advance and row is not None and selection.rotation != rotation:
                row.rotation = selection.rotation
        return selection

    # -------------------------------------------------------------- the voice ports

    async def clip_for_tone(self, tone_id: str) -> OpusClip | None:
        """A catalog tone's audio, for menus that play it (personal tones are private)."""
        tone = await self.catalog.get(tone_id)
        if tone is None or tone.personal:
            return None
        return await self.clips.get(tone.clip_id)

    async def ringback_for(self, call_id: str, caller_id: str, callee_id: str) -> OpusClip:
        try:
            selection = await self.choose(callee_id, caller_id, advance=True)
            tone = await self.catalog.get(selection.tone_id) if selection.tone_id else None
            clip = await self.clips.get(tone.clip_id) if tone else None
        except ChorusError as exc:  # the database is away: the caller still hears ringing
            log.warning("call=%s ringback selection failed, default tone: %s", call_id, exc)
            return self.fallback()
        if tone is None or clip is None:
            return self.fallback()
        await self.bus.put(
            f"ringback:{{{call_id}}}", {"tone_id": tone.tone_id}, ttl_s=PLAYING_TTL_S
        )
        await self.bus.publish(
            f"user:{caller_id}",
            {
                "type": "call.ringback",
                "call_id": call_id,
                "tone_id": tone.tone_id,
                "title": tone.title,
                "artist": tone.artist,
                "copyable": not tone.personal,
            },
        )
        return clip

    async def on_ringing_dtmf(
        self, call_id: str, caller_id: str, callee_id: str, digits: str
    ) -> None:
        if "*" not in digits:
            return  # other keys during ringback mean nothing (yet)
        playing = await self.bus.get(f"ringback:{{{call_id}}}")
        event = {"call_id": call_id}
        try:
            if playing is None:
                raise BadRequest("the default ring tone cannot be copied", code="not_copyable")
            tone = await self.catalog.get(playing["tone_id"])
            if tone is None or tone.personal:
                raise BadRequest("this tone cannot be copied", code="not_copyable")
            await self.box.acquire(caller_id, tone.tone_id, self.clock(), reason="copied")
            message = {
                "type": "ringback.copied",
                **event,
                "tone_id": tone.tone_id,
                "title": tone.title,
            }
        except ChorusError as exc:
            message = {"type": "ringback.copy_failed", **event, "reason": exc.code}
        await self.bus.publish(f"user:{caller_id}", message)


def _trusted(document: dict) -> rules.RingbackSetting:
    everything = {r["tone_id"] for r in document.get("rules", [])}
    if document.get("default_tone_id"):
        everything.add(document["default_tone_id"])
    groups = {g for r in document.get("rules", []) for g in r.get("groups", [])}
    return rules.parse_setting(document, known_tones=everything, known_groups=groups)
