"""SIP digest authentication (RFC 3261 22, RFC 2617 MD5, qop=auth) for REGISTER, pure.

Desk phones log in with the user's app username and password. The server keeps only
HA1 = MD5(username:realm:password), written when the password is set or used to log in; it
is what digest needs and no more (MD5 is what SIP phones speak; HA1 is useless for any
other realm or for the app login). Nonces are stateless: a timestamp signed with the
server's key, so any node checks any nonce and nothing is stored per challenge.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

REALM = "chorus"
NONCE_TTL_S = 300

_PARAM = re.compile(r'\s*([A-Za-z][A-Za-z0-9-]*)\s*=\s*("(?:[^"\\]|\\.)*"|[^\s,]+)\s*(?:,|$)')


def md5(text: str) -> str:
    return hashlib.md5(text.encode("utf-8"), usedforsecurity=False).hexdigest()


def ha1(username: str, password: str, realm: str = REALM) -> str:
    return md5(f"{username}:{realm}:{password}")


def new_nonce(key: str, now: float) -> str:
    stamp = f"{int(now):x}.{secrets.token_hex(4)}"
    sign = hmac.new(key.encode(), stamp.encode(), "sha256").hexdigest()[:16]
    return f"{stamp}.{sign}"


def nonce_age(key: str, nonce: str, now: float) -> float | None:
    """Seconds since we issued `nonce`, or None if we did not issue it."""
    parts = nonce.split(".")
    if len(parts) != 3:
        return None
    stamp = f"{parts[0]}.{parts[1]}"
    sign = hmac.new(key.encode(), stamp.encode(), "sha256").hexdigest()[:16]
    if not hmac.compare_digest(sign, parts[2]):
        return None
    try:
        return now - int(parts[0], 16)
    except ValueError:
        return None


def challenge(key: str, now: float, *, stale: bool = False, realm: str = REALM) -> str:
    """A WWW-Authenticate value."""
    value = f'Digest realm="{realm}", nonce="{new_nonce(key, now)}", algorithm=MD5, qop="auth"'
    return value + (", stale=true" if stale else "")


@dataclass(frozen=True)
class Credentials:
    """An Authorization header's digest parameters."""

    username: str
    realm: str
    nonce: str
    uri: str
    response: str
    qop: str | None = None
    nc: str | None = None
    cnonce: str | None = None
    algorithm: str = "MD5"


def _params(value: str) -> dict[str, str] | None:
    """The name=value parameters of a `Digest ...` header value."""
    scheme, _, rest = value.strip().partition(" ")
    if scheme.lower() != "digest":
        return None
    params: dict[str, str] = {}
    position = 0
    rest = rest.strip()
    while position < len(rest):
        match = _PARAM.match(rest, position)
        if match is None:
            return None
        name, raw = match.group(1).lower(), match.group(2)
        params[name] = raw[1:-1].replace('\\"', '"') if raw.startswith('"') else raw
        position = match.end()
    return params


def parse_credentials(value: str) -> Credentials | None:
    """The digest parameters of an Authorization value; None if it is not a usable one."""
    params = _params(value)
    if params is None:
        return None
    try:
        return Credentials(
            username=params["username"],
            realm=params["realm"],
            nonce=params["nonce"],
            uri=params["uri"],
            response=params["response"].lower(),
            qop=params.get("qop"),
            nc=params.get("nc"),
            cnonce=params.get("cnonce"),
            algorithm=params.get("algorithm", "MD5"),
        )
    except KeyError:
        return None


def expected_response(credentials: Credentials, method: str, user_ha1: str) -> str:
    ha2 = md5(f"{method}:{credentials.uri}")
    if credentials.qop == "auth":
        c = credentials
        return md5(f"{user_ha1}:{c.nonce}:{c.nc}:{c.cnonce}:auth:{ha2}")
    return md5(f"{user_ha1}:{credentials.nonce}:{ha2}")


def verify(
    credentials: Credentials, method: str, user_ha1: str, *, key: str, now: float
) -> str | None:
    """None when the credentials are good; else why not: `stale` (ask again with a fresh
    nonce; the phone retries by itself) or `bad` (wrong password, forged nonce...)."""
    if credentials.algorithm.upper() != "MD5" or credentials.realm != REALM:
        return "bad"
    if credentials.qop not in (None, "auth") or (
        credentials.qop == "auth" and not (credentials.nc and credentials.cnonce)
    ):
        return "bad"
    expected = expected_response(credentials, method, user_ha1)
    if not hmac.compare_digest(expected, credentials.response):
        return "bad"
    age = nonce_age(key, credentials.nonce, now)
    if age is None:
        return "bad"
    if not -5 <= age <= NONCE_TTL_S:
        return "stale"
    return None


def answer_challenge(
    challenge_value: str, method: str, uri: str, username: str, password: str
) -> str | None:
    """An Authorization value answering a carrier's WWW-/Proxy-Authenticate challenge (we
    are the client: registering to a trunk). None when the challenge is not MD5 digest."""
    params = _params(challenge_value)
    if params is None or params.get("algorithm", "MD5").upper() != "MD5":
        return None
    realm, nonce = params.get("realm", ""), params.get("nonce", "")
    auth = "auth" in [q.strip() for q in params.get("qop", "").split(",")]
    cnonce, nc = secrets.token_hex(8), "00000001"
    base = Credentials(
        username, realm, nonce, uri, "", "auth" if auth else None,
        nc if auth else None, cnonce if auth else None,
    )  # fmt: skip
    response = expected_response(base, method, ha1(username, password, realm))
    value = (
        f'Digest username="{username}", realm="{realm}", nonce="{nonce}", '
        f'uri="{uri}", response="{response}", algorithm=MD5'
    )
    if "opaque" in params:
        value += f', opaque="{params["opaque"]}"'
    if base.qop:
        value += f', qop=auth, nc={nc}, cnonce="{cnonce}"'
    return value
