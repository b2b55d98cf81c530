"""Request dependencies: the runtime, the authenticated user, the admin."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api.runtime import Runtime
from voice.errors import Forbidden, Unauthorized
from voice.store import UserInfo

_bearer = HTTPBearer(auto_error=False)


def get_runtime(request: Request) -> Runtime:
    return request.app.state.runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


def is_admin(runtime: Runtime, token: str | None) -> bool:
    return token is not None and hmac.compare_digest(token.encode(), runtime.admin_key.encode())


async def current_user(runtime: RuntimeDep, credentials: Credentials) -> UserInfo:
    if credentials is None:
        raise Unauthorized("log in first: Authorization: Bearer <token>")
    return await runtime.accounts.user_for_token(credentials.credentials)


async def require_admin(runtime: RuntimeDep, credentials: Credentials) -> None:
    if credentials is None:
        raise Unauthorized("this needs the admin key as bearer token")
    if not is_admin(runtime, credentials.credentials):
        raise Forbidden("this needs the admin key", code="admin_only")


CurrentUser = Annotated[UserInfo, Depends(current_user)]
Admin = Annotated[None, Depends(require_admin)]
