"""Sign-up, log-in, session tokens and address-book matching."""

from __future__ import annotations

import asyncio
import functools
import hashlib
import re
import secrets
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

import jwt
import phonenumbers
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerifyMismatchError

from voice.errors import BadRequest, Unauthorized
from voice.sip import digest
from voice.store import Store, UserInfo

USERNAME = re.compile(r"^[\w.-]{2,32}$")
MIN_PASSWORD = 6
_HASHER = PasswordHasher()


@functools.cache
def _dummy_hash() -> str:
    # Verifying against this when the user does not exist keeps log-in time the same either
    # way, so response timing does not tell which usernames exist.
    return _HASHER.hash(secrets.token_hex(8))


@dataclass(frozen=True)
class Session:
    token: str
    expires_at: datetime
    user: UserInfo


def normalise_phone(raw: str, region: str = "CN") -> str:
    """E.164 for a number as people type it ('138 0013 8000', '+1 (415) 555-0100')."""
    try:
        number = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException as exc:
        raise BadRequest(f"not a phone number: {raw!r}", code="bad_phone") from exc
    if not phonenumbers.is_possible_number(number):
        raise BadRequest(f"not a phone number: {raw!r}", code="bad_phone")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def phone_hash(salt: str, e164: str) -> str:
    return hashlib.sha256(f"{salt}{e164}".encode()).hexdigest()


class Accounts:
    def __init__(self, store: Store, *, signing_key: str, phone_salt: str, token_ttl_s: int):
        self.store = store
        self._key = signing_key
        self.phone_salt = phone_salt
        self._ttl = token_ttl_s

    async def sign_up(
        self, username: str, password: str, display_name: str | None, phone: str | None
    ) -> UserInfo:
        if not USERNAME.match(username):
            raise BadRequest(
                "usernames are 2-32 letters, digits, '.', '_' or '-'", code="bad_username"
            )
        if len(password) < MIN_PASSWORD:
            raise BadRequest(
                f"passwords need at least {MIN_PASSWORD} characters", code="weak_password"
            )
        e164 = normalise_phone(phone) if phone else None
        password_hash = await asyncio.to_thread(_HASHER.hash, password)
        user = await self.store.create_user(
            uuid.uuid4().hex,
            username,
            (display_name or username).strip()[:128],
            password_hash,
            e164,
        )
        return user

    async def log_in(self, username: str, password: str) -> Session:
        found = await self.store.password_hash(username)
        stored = found[1] if found else _dummy_hash()
        ok = await asyncio.to_thread(_verify, stored, password)
        if not ok or found is None:
            raise Unauthorized("wrong username or password", code="bad_credentials")
        user = found[0]
        expires = int(time.time()) + self._ttl
        token = jwt.encode(
            {"sub": user.id, "exp": expires, "jti": secrets.token_hex(8)}, self._key, "HS256"
        )
        return Session(token, datetime.fromtimestamp(expires, UTC), user)

    async def set_sip_password(self, user: UserInfo, password: str | None) -> None:
        """The password the user's desk phones register with (SIP digest), separate from the
        app password: it sits in phones' settings. None turns phone registration off."""
        if password is not None and len(password) < MIN_PASSWORD:
            raise BadRequest(
                f"passwords need at least {MIN_PASSWORD} characters", code="weak_password"
            )
        ha1 = digest.ha1(user.username, password) if password is not None else None
        await self.store.set_sip_ha1(user.id, ha1)

    async def user_for_token(self, token: str) -> UserInfo:
        try:
            claims = jwt.decode(
                token, self._key, algorithms=["HS256"], options={"require": ["exp"]}
            )
        except jwt.ExpiredSignatureError as exc:
            raise Unauthorized(
                "the session has expired, log in again", code="token_expired"
            ) from exc
        except jwt.InvalidTokenError as exc:
            raise Unauthorized("invalid token", code="bad_token") from exc
        user = await self.store.user_by_id(str(claims.get("sub")))
        if user is None:
            raise Unauthorized("invalid token", code="bad_token")
        return user

    async def match_phones(self, phones: list[str]) -> list[tuple[str, str]]:
        """(number as given, username) for the numbers that belong to users."""
        wanted: dict[str, list[str]] = {}
        for raw in phones:
            try:
                wanted.setdefault(normalise_phone(raw), []).append(raw)
            except BadRequest:
                continue  # an address book holds junk; skip it rather than fail the batch
        users = await self.store.users_by_phone(list(wanted))
        return [(raw, u.username) for u in users for raw in wanted.get(u.phone or "", [])]

    async def match_phone_hashes(self, hashes: list[str]) -> list[tuple[str, str]]:
        wanted = {h.lower() for h in hashes}
        users = await self.store.users_with_phone()
        found = ((phone_hash(self.phone_salt, u.phone or ""), u.username) for u in users)
        return [(h, name) for h, name in found if h in wanted]


def _verify(stored: str, password: str) -> bool:
    try:
        return _HASHER.verify(stored, password)
    except (VerifyMismatchError, InvalidHashError):
        return False
