from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, Field

from api.deps import Credentials, CurrentUser, RuntimeDep, is_admin
from api.runtime import Runtime
from api.schemas import Request as StrictRequest
from api.uploads import receive
from ringback.box import BoxItem, ChargeInfo, GiftInfo
from ringback.catalog import NewTone, ToneInfo
from ringback.rules import to_document
from voice.errors import BadRequest, NotFound, Unauthorized
from voice.store import UserInfo

router = APIRouter(tags=["ringback"])


class ToneOut(BaseModel):
    tone_id: str
    title: str
    artist: str | None = None
    category: str | None = None
    duration_s: float
    price: float
    validity_days: int | None = None
    personal: bool = False


class RuleIn(StrictRequest):
    tone_id: str
    callers: list[str] = Field(default_factory=list, max_length=500)
    groups: list[str] = Field(default_factory=list, max_length=100)
    days: list[int] = Field(default_factory=list, max_length=7)
    start: str | None = None
    end: str | None = None


class SettingIn(StrictRequest):
    default_tone_id: str | None = None
    mode: Literal["single", "shuffle"] = "single"
    timezone: str | None = Field(None, max_length=64)
    rules: list[RuleIn] = Field(default_factory=list, max_length=100)


class SettingOut(BaseModel):
    default_tone_id: str | None
    mode: str
    timezone: str
    rules: list[dict]


class BoxItemOut(BaseModel):
    tone: ToneOut
    source: str
    acquired_at: datetime
    expires_at: datetime | None
    usable: bool


class Purchase(StrictRequest):
    tone_id: str


class ChargeOut(BaseModel):
    charge_id: str
    tone_id: str
    title: str
    amount: float
    reason: str
    created_at: datetime


class GiftIn(StrictRequest):
    tone_id: str
    to: str = Field(min_length=1, max_length=64)


class GiftOut(BaseModel):
    gift_id: str
    from_: str = Field(serialization_alias="from")
    to: str
    tone: ToneOut
    state: str
    created_at: datetime


class Preview(BaseModel):
    tone_id: str | None
    title: str | None
    why: str


@dataclass(frozen=True)
class Principal:
    user: UserInfo | None
    admin: bool


async def principal(runtime: RuntimeDep, credentials: Credentials) -> Principal:
    """A user, or the admin key (which manages the catalog)."""
    if credentials is None:
        raise Unauthorized("log in first: Authorization: Bearer <token>")
    if is_admin(runtime, credentials.credentials):
        return Principal(user=None, admin=True)
    return Principal(
        user=await runtime.accounts.user_for_token(credentials.credentials), admin=False
    )


Who = Annotated[Principal, Depends(principal)]


def tone_out(tone: ToneInfo) -> ToneOut:
    return ToneOut(
        tone_id=tone.tone_id,
        title=tone.title,
        artist=tone.artist,
        category=tone.category,
        duration_s=round(tone.duration_s, 2),
        price=tone.price_cents / 100,
        validity_days=tone.validity_days,
        personal=tone.personal,
    )


def item_out(item: BoxItem, now: datetime) -> BoxItemOut:
    return BoxItemOut(
        tone=tone_out(item.tone),
        source=item.source,
        acquired_at=item.acquired_at,
        expires_at=item.expires_at,
        usable=item.usable(now),
    )


def charge_out(charge: ChargeInfo) -> ChargeOut:
    return ChargeOut(
        charge_id=charge.charge_id,
        tone_id=charge.tone_id,
        title=charge.title,
        amount=charge.amount_cents / 100,
        reason=charge.reason,
        created_at=charge.created_at,
    )


async def gift_out(runtime: Runtime, gift: GiftInfo) -> GiftOut:
    giver = await runtime.store.user_by_id(gift.from_id)
    taker = await runtime.store.user_by_id(gift.to_id)
    return GiftOut(
        gift_id=gift.gift_id,
        from_=giver.username if giver else "?",
        to=taker.username if taker else "?",
        tone=tone_out(gift.tone),
        state=gift.state,
        created_at=gift.created_at,
    )


def _now() -> datetime:
    return datetime.now(UTC)


# ------------------------------------------------------------------------------- catalog


@router.get("/v1/ringback/tones", response_model=list[ToneOut])
async def catalog(
    _: Who,
    runtime: RuntimeDep,
    q: Annotated[str | None, Query(max_length=100, description="title or artist contains")] = None,
    category: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> list[ToneOut]:
    tones = await runtime.ringback.catalog.search(
        query=q, category=category, limit=limit, offset=offset
    )
    return [tone_out(t) for t in tones]


@router.get("/v1/ringback/categories", response_model=list[str])
async def categories(_: Who, runtime: RuntimeDep) -> list[str]:
    return await runtime.ringback.catalog.categories()


@router.post("/v1/ringback/tones", status_code=201, response_model=ToneOut)
async def add_tone(request: Request, who: Who, runtime: RuntimeDep) -> ToneOut:
    """multipart/form-data: `file`, `title`, and for catalog tones (admin key) optionally
    `artist`, `category`, `price` (e.g. 2.00), `validity_days`. A user's upload becomes a
    personal tone only they can use."""
    limit = runtime.settings.tone_max_upload_mb * 1024 * 1024
    async with receive(request, max_bytes=limit) as upload:
        new = _new_tone(upload.fields, upload.filename)
        owner = None if who.admin else who.user.id  # type: ignore[union-attr]
        tone = await runtime.ringback.catalog.add(upload.path, new, owner_id=owner)  # type: ignore[arg-type]
    if who.user is not None:
        await runtime.ringback.box.add_personal(who.user.id, tone, _now())
    return tone_out(tone)


def _new_tone(fields: dict[str, str], filename: str | None) -> NewTone:
    title = fields.get("title") or (filename or "").rsplit(".", 1)[0]
    try:
        price = round(float(fields.get("price") or 0) * 100)
        validity = int(fields["validity_days"]) if fields.get("validity_days") else None
    except ValueError as exc:
        raise BadRequest(
            "price and validity_days must be numbers", code="bad_field", status=422
        ) from exc
    if price < 0 or (validity is not None and validity <= 0):
        raise BadRequest("price must be >= 0 and validity_days > 0", code="bad_field", status=422)
    return NewTone(title, fields.get("artist"), fields.get("category"), price, validity)


@router.get("/v1/ringback/tones/{tone_id}", response_model=ToneOut)
async def get_tone(tone_id: str, who: Who, runtime: RuntimeDep) -> ToneOut:
    return tone_out(await _visible(runtime, who, tone_id))


@router.get("/v1/ringback/tones/{tone_id}/audio", response_class=Response)
async def tone_audio(tone_id: str, who: Who, runtime: RuntimeDep) -> Response:
    tone = await _visible(runtime, who, tone_id)
    wav = await runtime.ringback.clips.wav(tone.clip_id)
    if wav is None:
        raise NotFound("the tone's audio is gone", code="tone_not_found")
    return Response(wav, media_type="audio/wav", headers={"Cache-Control": "private, max-age=3600"})


@router.delete("/v1/ringback/tones/{tone_id}", status_code=204)
async def delete_tone(tone_id: str, who: Who, runtime: RuntimeDep) -> Response:
    user_id = who.user.id if who.user else None
    await runtime.ringback.catalog.delete(tone_id, user_id=user_id, admin=who.admin)
    return Response(status_code=204)


async def _visible(runtime: Runtime, who: Principal, tone_id: str) -> ToneInfo:
    if who.admin:
        tone = await runtime.ringback.catalog.get(tone_id)
        if tone is None:
            raise NotFound("no such tone", code="tone_not_found")
        return tone
    return await runtime.ringback.catalog.visible(tone_id, who.user.id)  # type: ignore[union-attr]


# ------------------------------------------------------------------- a user's ringback


@router.get("/v1/me/ringback", response_model=SettingOut)
async def get_setting(user: CurrentUser, runtime: RuntimeDep) -> SettingOut:
    return SettingOut(**to_document(await runtime.ringback.setting(user.id)))


@router.put("/v1/me/ringback", response_model=SettingOut)
async def put_setting(body: SettingIn, user: CurrentUser, runtime: RuntimeDep) -> SettingOut:
    setting = await runtime.ringback.put_setting(user.id, body.model_dump())
    return SettingOut(**to_document(setting))


@router.get("/v1/me/ringback/preview", response_model=Preview)
async def preview(
    user: CurrentUser,
    runtime: RuntimeDep,
    caller: Annotated[str | None, Query(max_length=64)] = None,
) -> Preview:
    """Which tone `caller` (a username; none: an unknown caller) would hear calling you now."""
    caller_user = await runtime.store.user_by_username(caller) if caller else None
    if caller and caller_user is None:
        raise NotFound(f"no user called {caller!r}", code="user_not_found")
    selection = await runtime.ringback.choose(
        user.id, caller_user.id if caller_user else None, advance=False
    )
    tone = await runtime.ringback.catalog.get(selection.tone_id) if selection.tone_id else None
    return Preview(tone_id=selection.tone_id, title=tone.title if tone else None, why=selection.why)


@router.get("/v1/me/ringback/box", response_model=list[BoxItemOut])
async def box(user: CurrentUser, runtime: RuntimeDep) -> list[BoxItemOut]:
    now = _now()
    return [item_out(i, now) for i in await runtime.ringback.box.items(user.id)]


@router.post("/v1/me/ringback/box", status_code=201, response_model=BoxItemOut)
async def buy(body: Purchase, user: CurrentUser, runtime: RuntimeDep) -> BoxItemOut:
    """Buy (or renew) a catalog tone: charged to the ledger, valid for its validity days."""
    now = _now()
    return item_out(
        await runtime.ringback.box.acquire(user.id, body.tone_id, now, reason="bought"), now
    )


@router.delete("/v1/me/ringback/box/{tone_id}", status_code=204)
async def remove_from_box(tone_id: str, user: CurrentUser, runtime: RuntimeDep) -> Response:
    await runtime.ringback.box.remove(user.id, tone_id)
    return Response(status_code=204)


@router.get("/v1/me/ringback/charges", response_model=list[ChargeOut])
async def charges(user: CurrentUser, runtime: RuntimeDep) -> list[ChargeOut]:
    return [charge_out(c) for c in await runtime.ringback.box.charges(user.id)]


@router.post("/v1/me/ringback/gifts", status_code=201, response_model=GiftOut)
async def send_gift(body: GiftIn, user: CurrentUser, runtime: RuntimeDep) -> GiftOut:
    to = await runtime.store.user_by_username(body.to)
    if to is None:
        raise NotFound(f"no user called {body.to!r}", code="user_not_found")
    gift = await runtime.ringback.box.send_gift(user.id, to.id, body.tone_id, _now())
    out = await gift_out(runtime, gift)
    await runtime.bus.publish(
        f"user:{to.id}", {"type": "ringback.gift", **out.model_dump(mode="json", by_alias=True)}
    )
    return out


@router.get("/v1/me/ringback/gifts", response_model=list[GiftOut])
async def gifts(user: CurrentUser, runtime: RuntimeDep) -> list[GiftOut]:
    return [await gift_out(runtime, g) for g in await runtime.ringback.box.gifts(user.id)]


@router.post("/v1/me/ringback/gifts/{gift_id}/{decision}", response_model=GiftOut)
async def decide_gift(
    gift_id: str, decision: Literal["accept", "decline"], user: CurrentUser, runtime: RuntimeDep
) -> GiftOut:
    gift = await runtime.ringback.box.decide_gift(user.id, gift_id, decision == "accept", _now())
    return await gift_out(runtime, gift)
