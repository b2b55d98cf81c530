from __future__ import annotations

from fastapi import APIRouter, Response

from api.deps import CurrentUser, RuntimeDep
from api.schemas import ContactCreate, ContactPublic, Match, MatchPublic, MatchRequest, SaltPublic
from voice.errors import BadRequest, NotFound

router = APIRouter(prefix="/v1/contacts", tags=["contacts"])


@router.get("", response_model=list[ContactPublic])
async def contacts(user: CurrentUser, runtime: RuntimeDep) -> list[ContactPublic]:
    return [
        ContactPublic(username=c.username, display_name=c.display_name, group=c.group)
        for c in await runtime.store.contacts(user.id)
    ]


@router.post("", status_code=201, response_model=ContactPublic)
async def add_contact(body: ContactCreate, user: CurrentUser, runtime: RuntimeDep) -> ContactPublic:
    other = await runtime.store.user_by_username(body.username)
    if other is None:
        raise NotFound(f"no user called {body.username!r}", code="user_not_found")
    if other.id == user.id:
        raise BadRequest("you cannot add yourself as a contact", code="cannot_add_self")
    group = body.group.strip() if body.group and body.group.strip() else None
    await runtime.store.put_contact(user.id, other.id, group)
    return ContactPublic(username=other.username, display_name=other.display_name, group=group)


@router.delete("/{username}", status_code=204)
async def remove_contact(username: str, user: CurrentUser, runtime: RuntimeDep) -> Response:
    other = await runtime.store.user_by_username(username)
    if other is None or not await runtime.store.remove_contact(user.id, other.id):
        raise NotFound(f"{username!r} is not in your contacts", code="contact_not_found")
    return Response(status_code=204)


@router.get("/match/salt", response_model=SaltPublic)
async def match_salt(_: CurrentUser, runtime: RuntimeDep) -> SaltPublic:
    return SaltPublic(salt=runtime.accounts.phone_salt)


@router.post("/match", response_model=MatchPublic)
async def match(body: MatchRequest, _: CurrentUser, runtime: RuntimeDep) -> MatchPublic:
    if body.phones is None and body.phone_hashes is None:
        raise BadRequest("send phones or phone_hashes", code="invalid_request")
    matches = [
        Match(phone=phone, username=name)
        for phone, name in await runtime.accounts.match_phones(body.phones or [])
    ]
    matches += [
        Match(phone_hash=h, username=name)
        for h, name in await runtime.accounts.match_phone_hashes(body.phone_hashes or [])
    ]
    return MatchPublic(matches=matches)
