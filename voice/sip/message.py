"""SIP messages (RFC 3261 section 7, 20, 25): parse and serialize, pure and strict.

`parse(data)` takes one datagram (or one framed stream message) as bytes and returns a
`SipMessage`, or raises `SipError` carrying the status to answer with (400 for bad syntax,
505 for another SIP version). It is strict where a sloppy reading would let a message be
half-processed (start line spacing, scalar ranges, quoting, name-addr brackets, CSeq method,
Content-Length) and liberal where RFC 3261 is (case, compact names, folding, LWS around
separators, unknown headers and parameters). The RFC 4475 torture messages are its tests.

Messages keep their headers as written (unfolded) so a proxy can forward them unchanged but
for the headers it edits; typed views (`Via`, `NameAddr`, `CSeq`, `SipUri`) are parsed on
demand. `application_refusal(msg)` says what a user agent should answer to a message that
parses but that it must still refuse (unknown Require, unknown URI scheme, Max-Forwards 0...).

Nothing here does I/O or keeps state: the SIP front and the tests share it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import unquote_to_bytes

MAX_MESSAGE_BYTES = 65535
MAX_CSEQ = 2**31 - 1
MAX_FORWARDS_LIMIT = 255
SIP_VERSION = "SIP/2.0"

REASONS = {
    100: "Trying",
    180: "Ringing",
    183: "Session Progress",
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    406: "Not Acceptable",
    407: "Proxy Authentication Required",
    408: "Request Timeout",
    413: "Request Entity Too Large",
    415: "Unsupported Media Type",
    416: "Unsupported URI Scheme",
    420: "Bad Extension",
    480: "Temporarily Unavailable",
    481: "Call/Transaction Does Not Exist",
    482: "Loop Detected",
    483: "Too Many Hops",
    484: "Address Incomplete",
    486: "Busy Here",
    487: "Request Terminated",
    488: "Not Acceptable Here",
    500: "Server Internal Error",
    501: "Not Implemented",
    503: "Service Unavailable",
    505: "Version Not Supported",
    603: "Decline",
}

COMPACT = {
    "a": "Accept-Contact",
    "b": "Referred-By",
    "c": "Content-Type",
    "d": "Request-Disposition",
    "e": "Content-Encoding",
    "f": "From",
    "i": "Call-ID",
    "j": "Reject-Contact",
    "k": "Supported",
    "l": "Content-Length",
    "m": "Contact",
    "n": "Identity-Info",
    "o": "Event",
    "r": "Refer-To",
    "s": "Subject",
    "t": "To",
    "u": "Allow-Events",
    "v": "Via",
    "x": "Session-Expires",
    "y": "Identity",
}
_CANONICAL = {
    name.lower(): name
    for name in (
        *COMPACT.values(),
        "Accept",
        "Accept-Encoding",
        "Accept-Language",
        "Alert-Info",
        "Allow",
        "Authorization",
        "Call-Info",
        "Content-Disposition",
        "Content-Language",
        "CSeq",
        "Date",
        "Error-Info",
        "Expires",
        "In-Reply-To",
        "Max-Forwards",
        "Min-Expires",
        "Min-SE",
        "MIME-Version",
        "Organization",
        "Priority",
        "Proxy-Authenticate",
        "Proxy-Authorization",
        "Proxy-Require",
        "Record-Route",
        "Reply-To",
        "Require",
        "Retry-After",
        "Route",
        "Server",
        "Timestamp",
        "Unsupported",
        "User-Agent",
        "Warning",
        "WWW-Authenticate",
    )
}
# Headers whose value is a comma-separated list (RFC 3261 7.3.1); the others hold one value
# that may itself contain commas (Date, Authorization, WWW-Authenticate...).
LIST_HEADERS = frozenset(
    {
        "Via",
        "Contact",
        "Route",
        "Record-Route",
        "Allow",
        "Supported",
        "Require",
        "Proxy-Require",
        "Unsupported",
        "Accept",
        "Accept-Encoding",
        "Accept-Language",
        "Content-Encoding",
        "Content-Language",
        "In-Reply-To",
        "Alert-Info",
        "Call-Info",
        "Error-Info",
        "Warning",
        "Allow-Events",
    }
)
# Headers a message may carry at most once (RFC 4475 3.3.8).
SINGLE_HEADERS = ("To", "From", "Call-ID", "CSeq", "Max-Forwards", "Content-Length", "Content-Type")

_TOKEN = re.compile(r"^[A-Za-z0-9\-.!%*_+`'~]+$")
_TOKEN_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.!%*_+`'~")
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+\-.]*$")
_LABEL = r"[A-Za-z0-9]([A-Za-z0-9\-]*[A-Za-z0-9])?"
_HOSTNAME = re.compile(rf"^{_LABEL}(\.{_LABEL})*\.?$")
_IPV4 = re.compile(r"^[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}$")
_IPV6 = re.compile(r"^\[[0-9A-Fa-f:.]+\]$")
_DIGITS = re.compile(r"^[0-9]+$")
_WS = re.compile(r"[ \t]+")
# A bare URI (addr-spec outside <>) or URI characters: no whitespace, brackets or quotes.
_URI_CHARS = re.compile(r"^[^\s<>\"]+$")
_USER_CHARS = re.compile(r"^([A-Za-z0-9\-_.!~*'()&=+$,;?/]|%[0-9A-Fa-f]{2})+$")
_PARAM_CHARS = re.compile(r"^([A-Za-z0-9\-_.!~*'()\[\]/:&+$]|%[0-9A-Fa-f]{2})+$")
_DATE = re.compile(
    r"^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d{2} (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)"
    r" \d{4} \d{2}:\d{2}:\d{2} GMT$"
)


class SipError(Exception):
    """A message we cannot accept; `status` is the response to send (when one can be sent)."""

    def __init__(self, status: int, reason: str):
        super().__init__(f"{status} {reason}")
        self.status = status
        self.reason = reason


def _bad(reason: str) -> SipError:
    return SipError(400, reason)


def canonical_name(name: str) -> str:
    """Compact forms expanded, known names in their usual spelling, others as written."""
    if len(name) == 1 and name.lower() in COMPACT:
        return COMPACT[name.lower()]
    return _CANONICAL.get(name.lower(), name)


def is_token(text: str) -> bool:
    return bool(_TOKEN.match(text))


def unescape(text: str) -> str:
    """%HH escapes decoded (RFC 3261 25.1); invalid escapes stay as written. Bytes that are
    not UTF-8 (e.g. %00, %FF) survive as surrogates so nothing is lost."""
    if "%" not in text:
        return text
    return unquote_to_bytes(text).decode("utf-8", "surrogateescape")


# ------------------------------------------------------------------------------------ URIs


@dataclass(frozen=True)
class SipUri:
    """A URI. For sip/sips the parts are split out; any other scheme keeps `opaque`."""

    scheme: str
    user: str | None = None  # as written (escaped)
    password: str | None = None
    host: str = ""
    port: int | None = None
    params: tuple[tuple[str, str | None], ...] = ()
    headers: str | None = None  # as written after "?"
    opaque: str | None = None

    @property
    def is_sip(self) -> bool:
        return self.opaque is None

    @property
    def user_unescaped(self) -> str | None:
        return unescape(self.user) if self.user is not None else None

    def param(self, name: str) -> str | None:
        for key, value in self.params:
            if key.lower() == name.lower():
                return value if value is not None else ""
        return None

    def has_param(self, name: str) -> bool:
        return any(key.lower() == name.lower() for key, _ in self.params)

    def __str__(self) -> str:
        if self.opaque is not None:
            return f"{self.scheme}:{self.opaque}"
        out = [self.scheme, ":"]
        if self.user is not None:
            out.append(self.user)
            if self.password is not None:
                out += [":", self.password]
            out.append("@")
        out.append(self.host)
        if self.port is not None:
            out.append(f":{self.port}")
        for key, value in self.params:
            out.append(f";{key}" if value is None else f";{key}={value}")
        if self.headers is not None:
            out.append(f"?{self.headers}")
        return "".join(out)


def _check_host(host: str) -> None:
    if _IPV6.match(host):
        return
    if _IPV4.match(host):
        if any(int(part) > 255 for part in host.split(".")):
            raise _bad(f"bad IPv4 address {host[:40]!r}")
        return
    if not _HOSTNAME.match(host):
        raise _bad(f"bad host {host[:40]!r}")


def _split_hostport(text: str) -> tuple[str, int | None]:
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise _bad("unterminated IPv6 reference")
        host, rest = text[: end + 1], text[end + 1 :]
        if rest and not rest.startswith(":"):
            raise _bad("junk after an IPv6 reference")
        port_text = rest[1:] if rest else None
    else:
        host, _, port_text = text.partition(":")
        if not _:
            port_text = None
    _check_host(host)
    port = None
    if port_text is not None:
        if not _DIGITS.match(port_text) or len(port_text) > 5 or int(port_text) > 65535:
            raise _bad(f"bad port {port_text[:12]!r}")
        port = int(port_text)
    return host, port


def parse_uri(text: str, *, allow_headers: bool = True) -> SipUri:
    """One URI as it appears in a Request-URI or inside <>; SipError(400) when malformed.

    `allow_headers` is False for a Request-URI, which must not carry ?headers (RFC 3261
    19.1.5)."""
    if not text or not _URI_CHARS.match(text):
        raise _bad(f"malformed URI {text[:60]!r}")
    scheme, colon, rest = text.partition(":")
    if not colon or not _SCHEME.match(scheme):
        raise _bad(f"URI without a scheme: {text[:60]!r}")
    lowered = scheme.lower()
    if lowered not in ("sip", "sips"):
        if not rest:
            raise _bad("empty URI")
        return SipUri(lowered, opaque=rest)
    user = password = None
    at = rest.find("@")
    if at >= 0:
        userinfo, rest = rest[:at], rest[at + 1 :]
        user, sep, pw = userinfo.partition(":")
        password = pw if sep else None
        if not user or not _USER_CHARS.match(user):
            raise _bad(f"bad user part in {text[:60]!r}")
    headers = None
    if "?" in rest:
        rest, _, headers = rest.partition("?")
        if not allow_headers:
            raise _bad("a Request-URI must not carry headers")
    hostport, *raw_params = rest.split(";")
    host, port = _split_hostport(hostport)
    params = []
    for raw in raw_params:
        key, eq, value = raw.partition("=")
        if not key or not _PARAM_CHARS.match(key) or (eq and not _PARAM_CHARS.match(value)):
            raise _bad(f"bad URI parameter in {text[:60]!r}")
        params.append((key, value if eq else None))
    return SipUri(lowered, user, password, host, port, tuple(params), headers)


# ------------------------------------------------------------------- header value helpers


def split_list(value: str) -> list[str]:
    """A list header's values, split at commas outside quotes and <>."""
    items, start, quoted, angle, i = [], 0, False, False, 0
    while i < len(value):
        ch = value[i]
        if quoted:
            if ch == "\\":
                i += 1
            elif ch == '"':
                quoted = False
        elif ch == '"':
            quoted = True
        elif ch == "<":
            angle = True
        elif ch == ">":
            angle = False
        elif ch == "," and not angle:
            items.append(value[start:i].strip())
            start = i + 1
        i += 1
    if quoted:
        raise _bad("unterminated quoted string")
    items.append(value[start:].strip())
    return items


def _read_quoted(text: str, start: int) -> int:
    """Index just past the quoted string starting at text[start] == '"'."""
    i = start + 1
    while i < len(text):
        if text[i] == "\\":
            i += 2
            continue
        if text[i] == '"':
            return i + 1
        i += 1
    raise _bad("unterminated quoted string")


def parse_params(text: str) -> tuple[tuple[str, str | None], ...]:
    """`;name[=value]` parameters with optional LWS around ';' and '='; values are tokens,
    hosts or quoted strings. Empty names are errors (RFC 4475 3.1.2.1)."""
    params: list[tuple[str, str | None]] = []
    i = 0
    text = text.strip()
    while i < len(text):
        if text[i] != ";":
            raise _bad(f"expected ';' in parameters {text[:60]!r}")
        i += 1
        j = i
        while j < len(text) and text[j] not in "=;":
            if text[j] == '"':
                raise _bad("quote in a parameter name")
            j += 1
        name = text[i:j].strip()
        if not name or not is_token(name):
            raise _bad(f"bad parameter name in {text[:60]!r}")
        if j < len(text) and text[j] == "=":
            j += 1
            while j < len(text) and text[j] in " \t":
                j += 1
            if j < len(text) and text[j] == '"':
                end = _read_quoted(text, j)
                value = text[j:end]
                j = end
            else:
                k = j
                while k < len(text) and text[k] != ";":
                    k += 1
                value = text[j:k].strip()
                if not value or not re.match(r"^[A-Za-z0-9\-.!%*_+`'~:\[\]]+$", value):
                    raise _bad(f"bad value of parameter {name!r}")
                j = k
            rest = text[j:]
            if rest.strip() and not rest.lstrip().startswith(";"):
                raise _bad(f"junk after parameter {name!r}")
            params.append((name, value))
            i = j + (len(rest) - len(rest.lstrip()))
        else:
            params.append((name, None))
            i = j
    return tuple(params)


def _param(params: tuple[tuple[str, str | None], ...], name: str) -> str | None:
    for key, value in params:
        if key.lower() == name:
            return value if value is not None else ""
    return None


# --------------------------------------------------------------------- typed header views


@dataclass(frozen=True)
class NameAddr:
    """From, To, Contact, Route, Record-Route: `"display" <uri>;params` or `uri;params`."""

    display: str | None
    uri: SipUri
    params: tuple[tuple[str, str | None], ...] = ()
    bracketed: bool = True

    @property
    def tag(self) -> str | None:
        return _param(self.params, "tag")

    def param(self, name: str) -> str | None:
        return _param(self.params, name.lower())

    def __str__(self) -> str:
        head = f"<{self.uri}>"
        if self.display:
            head = f"{self.display} {head}"
        return head + "".join(f";{k}" if v is None else f";{k}={v}" for k, v in self.params)


def parse_name_addr(value: str) -> NameAddr:
    text = value.strip()
    if not text:
        raise _bad("empty address")
    display: str | None = None
    if text.startswith('"'):
        end = _read_quoted(text, 0)
        display = text[:end]
        text = text[end:].lstrip()
        if not text.startswith("<"):
            raise _bad("a quoted display name must be followed by <uri>")
    elif "<" in text:
        lt = text.index("<")
        words = text[:lt].strip()
        if words and not all(is_token(word) for word in _WS.split(words)):
            raise _bad(f"display name {words[:40]!r} must be quoted")
        display = words or None
        text = text[lt:]
    if text.startswith("<"):
        gt = text.find(">")
        if gt < 0:
            raise _bad("unterminated <uri>")
        uri = parse_uri(text[1:gt])
        return NameAddr(display, uri, parse_params(text[gt + 1 :]), True)
    # addr-spec: the URI ends at the first ';' and may not contain ',', '?' or ';'
    uri_text, semi, rest = text.partition(";")
    uri_text = uri_text.strip()
    if "?" in uri_text or "," in uri_text:
        raise _bad("a URI with '?' or ',' must be enclosed in <>")
    return NameAddr(None, parse_uri(uri_text), parse_params(semi + rest), False)


@dataclass(frozen=True)
class Via:
    transport: str
    host: str
    port: int | None
    params: tuple[tuple[str, str | None], ...] = ()

    @property
    def branch(self) -> str | None:
        return _param(self.params, "branch")

    @property
    def received(self) -> str | None:
        return _param(self.params, "received")

    @property
    def rport(self) -> str | None:
        return _param(self.params, "rport")

    def __str__(self) -> str:
        port = f":{self.port}" if self.port is not None else ""
        params = "".join(f";{k}" if v is None else f";{k}={v}" for k, v in self.params)
        return f"SIP/2.0/{self.transport} {self.host}{port}{params}"


_VIA = re.compile(r"^SIP\s*/\s*2\.0\s*/\s*([A-Za-z0-9\-.!%*_+`'~]+)\s+([^;\s]+)\s*(;.*)?$", re.S)


def parse_via(value: str) -> Via:
    match = _VIA.match(value.strip())
    if match is None:
        if re.match(r"^SIP\s*/\s*\d+\.\d+\s*/", value.strip()):
            raise SipError(505, "Version Not Supported")
        raise _bad(f"malformed Via {value[:60]!r}")
    transport, hostport, params = match.groups()
    host, port = _split_hostport(hostport)
    parsed = parse_params(params or "")
    for key, val in parsed:
        if key.lower() in ("ttl", "rport") and val and (not _DIGITS.match(val) or int(val) > 65535):
            raise _bad(f"bad Via {key}")
    return Via(transport.upper(), host, port, parsed)


@dataclass(frozen=True)
class CSeq:
    number: int
    method: str

    def __str__(self) -> str:
        return f"{self.number} {self.method}"


def parse_cseq(value: str) -> CSeq:
    parts = value.split()
    if len(parts) != 2 or not _DIGITS.match(parts[0]) or not is_token(parts[1]):
        raise _bad(f"malformed CSeq {value[:40]!r}")
    if len(parts[0]) > 10 or int(parts[0]) > MAX_CSEQ:
        raise _bad("CSeq number out of range")
    return CSeq(int(parts[0]), parts[1])


def _delta_seconds(value: str, what: str, limit: int | None = None) -> int:
    text = value.strip(" \t")
    if not _DIGITS.match(text):
        raise _bad(f"malformed {what}")
    if len(text) > 10 or (limit is not None and int(text) > limit):
        raise _bad(f"{what} out of range")
    return int(text)


# -------------------------------------------------------------------------------- message


@dataclass
class SipMessage:
    """A request (`method`, `uri`) or a response (`status`, `reason`).

    `headers` is the list of (canonical name, value) in order, folded lines joined; the same
    name may repeat. `body` is bytes."""

    method: str | None = None
    uri: SipUri | None = None
    status: int | None = None
    reason: str = ""
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    content_length_conflict: bool = False

    @property
    def is_request(self) -> bool:
        return self.method is not None

    # -- header access ------------------------------------------------------------------

    def get(self, name: str) -> str | None:
        name = canonical_name(name)
        for key, value in self.headers:
            if key == name:
                return value
        return None

    def get_all(self, name: str) -> list[str]:
        """Every value of `name`: list headers split at commas, one header line each else."""
        name = canonical_name(name)
        values: list[str] = []
        for key, value in self.headers:
            if key == name:
                values.extend(split_list(value) if name in LIST_HEADERS else [value])
        return values

    def count(self, name: str) -> int:
        name = canonical_name(name)
        return sum(1 for key, _ in self.headers if key == name)

    def set(self, name: str, value: str) -> None:
        """Replace every `name` header with one (appended at the end when new)."""
        name = canonical_name(name)
        for index, (key, _) in enumerate(self.headers):
            if key == name:
                self.headers[index] = (name, value)
                self.headers = [h for i, h in enumerate(self.headers) if i <= index or h[0] != name]
                return
        self.headers.append((name, value))

    def remove(self, name: str) -> None:
        name = canonical_name(name)
        self.headers = [h for h in self.headers if h[0] != name]

    def prepend(self, name: str, value: str) -> None:
        """Add a value on top of a list header (Via, Record-Route): before the first one."""
        name = canonical_name(name)
        for index, (key, _) in enumerate(self.headers):
            if key == name:
                self.headers.insert(index, (name, value))
                return
        self.headers.insert(0, (name, value))

    def pop_first(self, name: str) -> str | None:
        """Remove and return the topmost value of a list header."""
        name = canonical_name(name)
        for index, (key, value) in enumerate(self.headers):
            if key == name:
                values = split_list(value)
                first, rest = values[0], values[1:]
                if rest:
                    self.headers[index] = (name, ", ".join(rest))
                else:
                    del self.headers[index]
                return first
        return None

    # -- typed views ----------------------------------------------------------------------

    @property
    def call_id(self) -> str:
        return (self.get("Call-ID") or "").strip()

    @property
    def cseq(self) -> CSeq:
        return parse_cseq(self.get("CSeq") or "")

    @property
    def vias(self) -> list[Via]:
        return [parse_via(v) for v in self.get_all("Via")]

    @property
    def top_via(self) -> Via:
        return parse_via(self.get_all("Via")[0])

    @property
    def from_(self) -> NameAddr:
        return parse_name_addr(self.get("From") or "")

    @property
    def to(self) -> NameAddr:
        return parse_name_addr(self.get("To") or "")

    @property
    def contacts(self) -> list[NameAddr]:
        return [parse_name_addr(v) for v in self.get_all("Contact") if v.strip() != "*"]

    @property
    def max_forwards(self) -> int | None:
        value = self.get("Max-Forwards")
        return int(value.strip(" \t")) if value is not None else None

    @property
    def content_type(self) -> str | None:
        value = self.get("Content-Type")
        return value.split(";")[0].strip().lower() if value else None

    # -- output ---------------------------------------------------------------------------

    def start_line(self) -> str:
        if self.method is not None:
            return f"{self.method} {self.uri} {SIP_VERSION}"
        return f"{SIP_VERSION} {self.status} {self.reason}"

    def to_bytes(self) -> bytes:
        """The wire form; Content-Length is always written and always right."""
        lines = [self.start_line()]
        lines += [f"{name}: {value}" for name, value in self.headers if name != "Content-Length"]
        lines.append(f"Content-Length: {len(self.body)}")
        head = "\r\n".join(lines) + "\r\n\r\n"
        return head.encode("utf-8", "surrogateescape") + self.body


# --------------------------------------------------------------------------------- parsing


def _split_head(data: bytes) -> tuple[bytes, bytes]:
    crlf = data.find(b"\r\n\r\n")
    lf = data.find(b"\n\n")
    if crlf >= 0 and (lf < 0 or crlf < lf):
        return data[:crlf], data[crlf + 4 :]
    if lf >= 0:
        return data[:lf], data[lf + 2 :]
    return data, b""  # no blank line: no body (a datagram may end right after the headers)


def _header_lines(head: str) -> list[str]:
    raw = head.replace("\r\n", "\n").split("\n")
    lines: list[str] = []
    for line in raw:
        if line[:1] in (" ", "\t"):
            if not lines:
                raise _bad("continuation line before any header")
            lines[-1] += " " + line.strip()
        else:
            lines.append(line)
    return lines


def _parse_start_line(line: str, message: SipMessage) -> None:
    if line.startswith("SIP/") or line.upper().startswith("SIP/"):
        version, sp, rest = line.partition(" ")
        if version.upper() != SIP_VERSION:
            raise SipError(505, "Version Not Supported")
        code, _, reason = rest.partition(" ")
        if not sp or len(code) != 3 or not _DIGITS.match(code) or not 100 <= int(code) <= 699:
            raise _bad(f"bad status line {line[:60]!r}")
        message.status, message.reason = int(code), reason
        return
    parts = line.split(" ")
    if len(parts) != 3 or not all(parts):
        raise _bad(f"the request line must be 'METHOD SP URI SP SIP/2.0', not {line[:80]!r}")
    method, uri, version = parts
    if not is_token(method):
        raise _bad(f"bad method {method[:30]!r}")
    if not version.upper().startswith("SIP/") or "\t" in line:
        raise _bad(f"bad request line {line[:80]!r}")
    if version.upper() != SIP_VERSION:
        raise SipError(505, "Version Not Supported")
    message.method = method
    message.uri = parse_uri(uri, allow_headers=False)


def _validate(message: SipMessage) -> None:
    """Check every header whose syntax we rely on; unknown headers pass as they are."""
    for name, value in message.headers:
        if name == "Via":
            for item in split_list(value):
                parse_via(item)
        elif name in ("From", "To"):
            parse_name_addr(value)
        elif name == "Contact":
            if value.strip() != "*":
                for item in split_list(value):
                    parse_name_addr(item)
        elif name in ("Route", "Record-Route"):
            for item in split_list(value):
                if not parse_name_addr(item).bracketed:
                    raise _bad(f"{name} values must be <uri>")
        elif name == "CSeq":
            parse_cseq(value)
        elif name == "Max-Forwards":
            _delta_seconds(value, "Max-Forwards", MAX_FORWARDS_LIMIT)
        elif name == "Expires" or name == "Min-Expires":
            _delta_seconds(value, name)
        elif name == "Retry-After":
            _delta_seconds(value.split(";")[0].split("(")[0], "Retry-After")
        elif name == "Date":
            if not _DATE.match(value.strip()):
                raise _bad("Date must be an RFC 1123 date in GMT")
        elif name == "Warning":
            for item in split_list(value):
                code = item.split(" ", 1)[0]
                if len(code) != 3 or not _DIGITS.match(code):
                    raise _bad("a Warning code has three digits")
        elif name == "Call-ID" and (not value.strip() or any(c in value for c in " \t")):
            raise _bad("bad Call-ID")
    for contact in message.get_all("Contact"):
        if contact.strip() == "*":
            continue
        expires = parse_name_addr(contact).param("expires")
        if expires is not None:
            _delta_seconds(expires, "Contact expires")
    if message.get("Via") is None:
        raise _bad("no Via")
    if message.get("CSeq") is None:
        raise _bad("no CSeq")
    if message.method is not None:
        cseq = parse_cseq(message.get("CSeq") or "")
        if cseq.method != message.method:
            raise _bad("the CSeq method differs from the request method")


def parse(data: bytes, *, stream: bool = False) -> SipMessage:
    """Parse one SIP message. Octets after the body that Content-Length declares are ignored
    (RFC 4475 3.1.1.8). Without Content-Length, the body is the rest of the datagram; on a
    stream transport (`stream`) Content-Length is required."""
    if len(data) > MAX_MESSAGE_BYTES:
        raise SipError(413, "Request Entity Too Large")
    data = data.lstrip(b"\r\n")  # keep-alive CRLFs before a message are allowed
    if not data:
        raise _bad("empty message")
    head_bytes, rest = _split_head(data)
    head = head_bytes.decode("utf-8", "surrogateescape")
    lines = _header_lines(head)
    message = SipMessage()
    _parse_start_line(lines[0], message)
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        name = name.rstrip(" \t")
        if not colon or not name or not is_token(name):
            raise _bad(f"malformed header line {line[:60]!r}")
        message.headers.append((canonical_name(name), value.strip(" \t")))
    _validate(message)
    lengths = message.get_all("Content-Length")
    for length in lengths:
        _delta_seconds(length, "Content-Length")
    if len({int(x.strip(" \t")) for x in lengths}) > 1:
        message.content_length_conflict = True  # refused by application_refusal (400)
        message.body = rest
    elif lengths:
        size = int(lengths[0].strip(" \t"))
        if size > len(rest):
            raise _bad("Content-Length is larger than the message")
        message.body = rest[:size]
    elif stream:
        raise _bad("Content-Length is required on stream transports")
    else:
        message.body = rest
    return message


# --------------------------------------------------------------------- application checks


# INFO bodies that carry a key press: `Signal=5` lines (application/dtmf-relay, the common
# one, from Cisco) or the bare key (application/dtmf).
DTMF_INFO_TYPES = frozenset({"application/dtmf-relay", "application/dtmf"})
DTMF_KEYS = "0123456789*#ABCD"


def info_dtmf(message: SipMessage) -> str | None:
    """The key an INFO request carries, or None (not an INFO DTMF, or no valid key in it)."""
    if message.method != "INFO" or message.content_type not in DTMF_INFO_TYPES:
        return None
    text = message.body[:512].decode("ascii", "replace")
    if message.content_type == "application/dtmf":
        key = text.strip()
    else:
        key = ""
        for line in text.splitlines():
            name, _, value = line.partition("=")
            if name.strip().lower() == "signal":
                key = value.strip()
                break
    key = {"10": "*", "11": "#"}.get(key, key).upper()  # some phones send event numbers
    return key if len(key) == 1 and key in DTMF_KEYS else None


@dataclass(frozen=True)
class Refusal:
    """What to answer to a message that parsed but must be refused; status 0: drop it."""

    status: int
    reason: str
    headers: tuple[tuple[str, str], ...] = ()


def application_refusal(
    message: SipMessage,
    *,
    supported: frozenset[str] = frozenset({"timer", "replaces", "100rel"}),
    body_types: frozenset[str] = frozenset({"application/sdp"}),
    schemes: frozenset[str] = frozenset({"sip", "sips"}),
) -> Refusal | None:
    """The refusal a user agent owes to `message` (RFC 3261 8.2 and RFC 4475 3.3), or None.

    Responses are only ever dropped (status 0), when their next hop would be a broadcast
    or multicast address (RFC 4475 3.3.10)."""
    if not message.is_request:
        vias = message.get_all("Via")
        for via in vias[1:2]:
            host = parse_via(via).host
            if host == "255.255.255.255" or _is_multicast(host):
                return Refusal(0, "response to a broadcast address")
        return None
    for name in SINGLE_HEADERS:
        if message.count(name) > 1 and name != "Content-Length":
            return Refusal(400, f"Multiple {name} headers")
    if message.content_length_conflict:
        return Refusal(400, "Multiple Content-Length values")
    for name in ("To", "From", "Call-ID"):
        if message.get(name) is None:
            return Refusal(400, f"Missing {name}")
    method = message.method
    assert message.uri is not None
    if message.uri.scheme not in schemes:
        return Refusal(416, REASONS[416])
    if method == "REGISTER":
        for name in ("To", "From"):
            if parse_name_addr(message.get(name) or "").uri.scheme not in schemes:
                return Refusal(416, REASONS[416])
    max_forwards = message.max_forwards
    if max_forwards is not None and max_forwards == 0:
        return Refusal(483, REASONS[483])
    if method not in ("ACK", "CANCEL"):
        unknown = [
            option
            for value in message.get_all("Require")
            for option in [value.strip()]
            if option and option.lower() not in supported
        ]
        if unknown:
            return Refusal(420, REASONS[420], (("Unsupported", ", ".join(unknown)),))
    if message.body and method not in ("ACK",):
        content_type = message.content_type
        allowed = body_types | {"multipart/mixed"}
        if method == "INFO":
            allowed = allowed | DTMF_INFO_TYPES
        if content_type is not None and content_type not in allowed:
            accept = ", ".join(sorted(body_types))
            return Refusal(415, REASONS[415], (("Accept", accept),))
    accept = message.get_all("Accept")
    if method == "INVITE" and accept:
        types = {item.split(";")[0].strip().lower() for item in accept}
        if not types & (body_types | {"*/*", "application/*"}):
            return Refusal(406, REASONS[406])
    for auth in message.get_all("Authorization"):
        if not auth.strip().lower().startswith("digest"):
            return Refusal(401, REASONS[401])
    return None


def _is_multicast(host: str) -> bool:
    if _IPV4.match(host):
        return 224 <= int(host.split(".")[0]) <= 239
    return False


# ------------------------------------------------------------------------------ responses


def response_to(
    request: SipMessage,
    status: int,
    reason: str | None = None,
    *,
    to_tag: str | None = None,
    headers: tuple[tuple[str, str], ...] = (),
    body: bytes = b"",
) -> SipMessage:
    """A response to `request` (RFC 3261 8.2.6): Via, From, Call-ID, CSeq copied, To with
    our tag when the request had none and `to_tag` is given."""
    response = SipMessage(status=status, reason=reason or REASONS.get(status, ""))
    for name, value in request.headers:
        if name in ("Via", "From", "Call-ID", "CSeq", "Record-Route") and (
            name != "Record-Route" or 100 < status < 300
        ):
            response.headers.append((name, value))
        elif name == "To":
            if to_tag and "tag" not in {k.lower() for k, _ in _safe_params(value)}:
                value = f"{value};tag={to_tag}"
            response.headers.append((name, value))
    response.headers.extend(headers)
    response.body = body
    return response


def _safe_params(value: str) -> tuple[tuple[str, str | None], ...]:
    try:
        return parse_name_addr(value).params
    except SipError:
        return ()


def best_effort_response(data: bytes, error: SipError) -> bytes | None:
    """A response to a request we could not parse, built from whatever headers we can read;
    None when it was no request or we cannot tell where to send an answer (then drop it)."""
    try:
        head, _ = _split_head(data.lstrip(b"\r\n")[:MAX_MESSAGE_BYTES])
        lines = _header_lines(head.decode("utf-8", "surrogateescape"))
    except SipError:
        return None
    first = lines[0].split(" ")
    if not first or first[0].upper().startswith("SIP/") or first[0] == "ACK":
        return None
    wanted = {"Via": [], "From": [], "To": [], "Call-ID": [], "CSeq": []}
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        name = canonical_name(name.strip())
        if colon and name in wanted:
            wanted[name].append(value.strip())
    if not wanted["Via"] or not wanted["Call-ID"] or len(wanted["CSeq"]) != 1:
        return None
    checks = {"Via": parse_via, "From": parse_name_addr, "To": parse_name_addr, "CSeq": parse_cseq}
    response = SipMessage(status=error.status, reason=error.reason[:60])
    for name in ("Via", "From", "To", "Call-ID", "CSeq"):
        for value in wanted[name]:
            try:
                if name == "Via":
                    for item in split_list(value):
                        parse_via(item)
                elif name in checks:
                    checks[name](value)
                elif not value or any(c in value for c in " \t"):
                    raise _bad("bad Call-ID")
            except SipError:
                if name in ("Via", "CSeq", "Call-ID"):
                    return None  # nowhere to send an answer that the sender could match
                continue
            response.headers.append((name, value))
    try:
        parse(response.to_bytes())
    except SipError:
        return None
    return response.to_bytes()
