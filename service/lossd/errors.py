"""One exception tree for the whole service.

Every error lossd raises on purpose is a :class:`LossdError` with a transport-neutral
:class:`ErrorCode`. Each transport maps the code once, in its guard (``api/rest/guard.py``,
``api/rpc/guard.py``); anything else that escapes is a bug and becomes :class:`InternalError`.

    LossdError
    ├── InvalidArgument     bad shape, dtype, option or value         400 / INVALID_ARGUMENT
    │   └── MalformedRequest   not JSON / wrong request structure      422 / INVALID_ARGUMENT
    ├── NotFound            unknown loss                              404 / NOT_FOUND
    ├── FailedPrecondition  state forbids it (finished run, reused id) 409 / FAILED_PRECONDITION
    ├── PayloadTooLarge     over a size limit                         413 / RESOURCE_EXHAUSTED
    ├── Unavailable         queue full, draining                      503 / UNAVAILABLE
    ├── DeadlineExceeded    expired before compute                    504 / DEADLINE_EXCEEDED
    ├── Unauthenticated     auth on and token missing or wrong        401 / UNAUTHENTICATED
    ├── InternalError       a bug (logged with its traceback)         500 / INTERNAL
    ├── Cancelled           the caller went away (client side only)   499 / CANCELLED
    └── UnknownError        an answer no other code fits (client side) 500 / UNKNOWN

The client (:mod:`lossd.client`) raises the same classes for what a server answered, and for
what went wrong on the way (connection refused: :class:`Unavailable`; out of time:
:class:`DeadlineExceeded`), with the HTTP ``status`` and a server's ``retry_after`` when known.
"""

from __future__ import annotations

from enum import Enum


class ErrorCode(str, Enum):
    """Transport-neutral error codes; each guard maps them to HTTP and gRPC statuses."""

    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    NOT_FOUND = "NOT_FOUND"
    FAILED_PRECONDITION = "FAILED_PRECONDITION"
    PAYLOAD_TOO_LARGE = "PAYLOAD_TOO_LARGE"
    UNAVAILABLE = "UNAVAILABLE"
    DEADLINE_EXCEEDED = "DEADLINE_EXCEEDED"
    UNAUTHENTICATED = "UNAUTHENTICATED"
    INTERNAL = "INTERNAL"
    CANCELLED = "CANCELLED"
    UNKNOWN = "UNKNOWN"

    def __str__(self) -> str:
        """The bare name (``INVALID_ARGUMENT``), as on the wire."""
        return self.value


MAX_MESSAGE = 1024
"""UTF-8 bytes of an error message at most: longer ones (a message quoting a 10 MB run id) are
cut, so an answer always fits gRPC's metadata (8 KiB, percent-encoded) and a log line stays a
line."""
MAX_FIELD = 128
"""UTF-8 bytes of an error's ``field`` at most (it may name a client's key)."""
SHOWN = 64
"""Characters of a client's value that a message quotes (see :func:`shown`)."""


def cut(text: str, limit: int) -> str:
    """``text`` itself, or its head and how long it was, within ``limit`` UTF-8 bytes (gRPC
    sends a message percent-encoded: a byte is at most 3 characters there)."""
    if len(text) <= limit and (text.isascii() or len(text.encode()) <= limit):
        return text
    tail = f"... ({len(text)} characters)"
    head = text.encode()[:max(limit - len(tail), 0)].decode("utf-8", "ignore")
    return head + tail


def shown(value: object, limit: int = SHOWN) -> str:
    """``repr(value)`` for a message, about ``limit`` characters at most (a 400-digit integer,
    a 20 KB name); huge integers are not even turned into digits."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 256:
        return f"an integer of about {int(value.bit_length() * 0.30103) + 1} digits"
    if isinstance(value, (str, bytes)) and len(value) > limit:
        return f"{value[:limit]!r}... ({len(value)} characters)"
    return cut(repr(value), limit)


class LossdError(Exception):
    """Base of every deliberate error: a code, a message for humans, the offending field.

    The message is cut to :data:`MAX_MESSAGE` bytes and the field to :data:`MAX_FIELD`,
    whatever a caller put in them.
    """

    code: ErrorCode = ErrorCode.INTERNAL
    status: int | None = None  # the HTTP status, when a REST server answered
    retry_after: float | None = None  # seconds, when the server said when to retry

    def __init__(self, message: str, *, field: str | None = None) -> None:
        message = cut(message, MAX_MESSAGE)
        super().__init__(message)
        self.message = message
        self.field = None if field is None else cut(field, MAX_FIELD)

    def __str__(self) -> str:
        """``CODE: message`` (``[field]`` appended when known)."""
        where = f" [{self.field}]" if self.field else ""
        return f"{self.code.value}: {self.message}{where}"

    def to_dict(self) -> dict[str, str]:
        """``{"code", "message"[, "field"]}``, the error body of the native REST API."""
        body = {"code": self.code.value, "message": self.message}
        if self.field is not None:
            body["field"] = self.field
        return body


class InvalidArgument(LossdError):
    """A bad shape, dtype, option or value; the message says what was expected and got."""

    code = ErrorCode.INVALID_ARGUMENT


class MalformedRequest(InvalidArgument):
    """The request itself is not of the API's form (REST answers 422, like a schema error)."""


class NotFound(LossdError):
    """Something unknown: a loss (model), a model version, a run, a route."""

    code = ErrorCode.NOT_FOUND


class FailedPrecondition(LossdError):
    """The request is well-formed but the state forbids it (a finished run, a reused id)."""

    code = ErrorCode.FAILED_PRECONDITION


class PayloadTooLarge(LossdError):
    """Over a size limit (body bytes, tensors, elements per tensor)."""

    code = ErrorCode.PAYLOAD_TOO_LARGE


class Unavailable(LossdError):
    """Not taking work now (queue full, draining); the client may retry."""

    code = ErrorCode.UNAVAILABLE


class DeadlineExceeded(LossdError):
    """The call's deadline passed before it was computed; the work was dropped."""

    code = ErrorCode.DEADLINE_EXCEEDED


class Unauthenticated(LossdError):
    """API keys are on and the request's key is missing or wrong."""

    code = ErrorCode.UNAUTHENTICATED


class InternalError(LossdError):
    """A bug: answered without details (the traceback is logged where it was caught)."""

    code = ErrorCode.INTERNAL

    def __init__(self, message: str = "internal error; the incident is logged") -> None:
        super().__init__(message)


class Cancelled(LossdError):
    """The call was cancelled before an answer came (raised by the client)."""

    code = ErrorCode.CANCELLED


class UnknownError(LossdError):
    """An answer that fits no other code (a proxy's page, an unexpected gRPC status)."""

    code = ErrorCode.UNKNOWN


ERRORS: dict[ErrorCode, type[LossdError]] = {
    cls.code: cls for cls in (InvalidArgument, NotFound, FailedPrecondition, PayloadTooLarge,
                              Unavailable, DeadlineExceeded, Unauthenticated, InternalError,
                              Cancelled, UnknownError)}


def error_for(code: str, message: str, field: str | None = None) -> LossdError:
    """The error of ``code`` (an :class:`ErrorCode` name; unknown names give UnknownError).

    >>> error_for("NOT_FOUND", "unknown loss 'mse2'", "loss")
    NotFound("unknown loss 'mse2'")
    """
    cls = ERRORS.get(ErrorCode(code) if code in ErrorCode.__members__ else ErrorCode.UNKNOWN,
                     UnknownError)
    if cls is InternalError:
        error: LossdError = InternalError(message)
        error.field = field
        return error
    return cls(message, field=field)
