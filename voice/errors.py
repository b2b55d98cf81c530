"""Domain errors. Each carries the HTTP status and error code to answer with, so adapters
translate foreign failures once at the boundary and the API layer maps them without guessing."""

from __future__ import annotations


class ChorusError(Exception):
    """Base of every error the service reports to a client."""

    status: int = 400
    code: str = "bad_request"
    # Set when the request body must not be read any further (an oversize upload): the
    # server then closes the connection instead of draining what the client still sends.
    close_connection: bool = False

    def __init__(self, message: str, *, code: str | None = None, status: int | None = None):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status


class BadRequest(ChorusError):
    status, code = 400, "bad_request"


class BadSdp(ChorusError):
    """The offer cannot be used: unparsable, no audio, no Opus, no DTLS fingerprint..."""

    status, code = 400, "bad_sdp"


class Unauthorized(ChorusError):
    status, code = 401, "unauthorized"


class Forbidden(ChorusError):
    status, code = 403, "forbidden"


class NotFound(ChorusError):
    status, code = 404, "not_found"


class Conflict(ChorusError):
    status, code = 409, "conflict"


class Unavailable(ChorusError):
    status, code = 503, "unavailable"
