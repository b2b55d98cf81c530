from __future__ import annotations

from fastapi import APIRouter

from api.deps import Credentials, CurrentUser, RuntimeDep, is_admin
from api.schemas import (
    Ok,
    SessionCreate,
    SessionPublic,
    SipPassword,
    UserCreate,
    UserPublic,
    UserUpdate,
)
from voice.accounts import normalise_phone
from voice.errors import Forbidden
from voice.store import UserInfo

router = APIRouter(prefix="/v1", tags=["users"])


def public(user: UserInfo) -> UserPublic:
    return UserPublic(
        id=user.id, username=user.username, display_name=user.display_name, phone=user.phone
    )


@router.post("/users", status_code=201, response_model=UserPublic)
async def sign_up(body: UserCreate, runtime: RuntimeDep, credentials: Credentials) -> UserPublic:
    token = credentials.credentials if credentials else None
    if not runtime.settings.allow_signup and not is_admin(runtime, token):
        raise Forbidden("sign-up is closed; ask an administrator", code="signup_closed")
    user = await runtime.accounts.sign_up(
        body.username, body.password, body.display_name, body.phone
    )
    return public(user)


@router.post("/sessions", response_model=SessionPublic)
async def log_in(body: SessionCreate, runtime: RuntimeDep) -> SessionPublic:
    session = await runtime.accounts.log_in(body.username, body.password)
    return SessionPublic(
        token=session.token, expires_at=session.expires_at, user=public(session.user)
    )


@router.get("/me", response_model=UserPublic)
async def me(user: CurrentUser) -> UserPublic:
    return public(user)


@router.patch("/me", response_model=UserPublic)
async def update_me(body: UserUpdate, user: CurrentUser, runtime: RuntimeDep) -> UserPublic:
    phone = None
    if body.phone is not None:
        phone = normalise_phone(body.phone) if body.phone else ""
    updated = await runtime.store.update_user(user.id, display_name=body.display_name, phone=phone)
    return public(updated)


@router.put("/me/sip-password", response_model=Ok)
async def set_sip_password(body: SipPassword, user: CurrentUser, runtime: RuntimeDep) -> Ok:
    """Desk phones and softphones register as `sip:<username>@<server>` with this password."""
    await runtime.accounts.set_sip_password(user, body.password)
    return Ok()
