"""The one error hierarchy of the project.

Adapters translate library errors into these with ``raise ... from e``; the API maps
them to HTTP status codes in a single exception handler.
"""

from __future__ import annotations

from typing import Any


class DatalakeError(Exception):
    """Base class of every error the project raises on purpose."""

    status_code = 400

    def __init__(self, message: str, *, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class InvalidInput(DatalakeError):
    """The caller sent something malformed (bad schema, unknown transform, ...)."""

    status_code = 422


class NotFound(DatalakeError):
    """The named entity does not exist (or is soft-deleted)."""

    status_code = 404


class Conflict(DatalakeError):
    """The request conflicts with the current state (duplicate name, finished job, ...)."""

    status_code = 409


class CommitConflict(Conflict):
    """An optimistic catalog update lost a race; the caller may retry."""


class ConstraintConflict(Conflict):
    """A change broke a catalog constraint (a unique key taken by a concurrent change)
    and was rolled back as a whole."""


class SnapshotExpired(Conflict):
    """A listing's snapshot is too old to be served (files of it may be deleted)."""


class IncompatibleSchema(Conflict):
    """A schema change breaks the table's compatibility mode."""


class TransientError(DatalakeError):
    """A fault that a retry with backoff may clear: a dropped catalog connection, a
    database that is restarting. The state machine retries it by this class's name."""

    status_code = 503


class StaleTask(DatalakeError):
    """The workflow no longer waits for this batch message (its task timed out, was
    retried with a new message, or its execution stopped): the attempt is dropped."""


class QualityGateFailed(Conflict):
    """A job rejected more records than its table's ``max_rejected_ratio`` allows."""


class BatchTimeout(DatalakeError):
    """An attempt at a batch ran past its budget, counted from when a worker took it."""


class SchemaMismatch(DatalakeError):
    """A source file's columns differ from a frozen table's schema."""


class SourceChanged(DatalakeError):
    """A source object changed (size or ETag) while it was being read."""


class ObjectsNotDeleted(DatalakeError):
    """Object storage refused to delete some objects; ``details`` lists each key with
    the store's error code and message."""


class CorruptInput(DatalakeError):
    """A source file cannot be parsed at all (as opposed to single bad records)."""


class CompactionUnavailable(DatalakeError):
    """Compaction cannot be requested (the optimize function is not configured or refused)."""

    status_code = 503


class Unauthorized(DatalakeError):
    """Missing or invalid credentials."""

    status_code = 401


class Forbidden(DatalakeError):
    """Valid credentials without the role the operation needs."""

    status_code = 403


#: Errors that the same input raises again on every attempt (a malformed file, a column a
#: frozen table lacks, a partition field of the wrong type): a retry cannot clear them, so
#: a batch that raises one fails at once. Anything else (TransientError, a dropped
#: connection, a timeout, a library error of unknown kind) is worth another attempt.
DETERMINISTIC: tuple[type[DatalakeError], ...] = (
    InvalidInput,
    NotFound,
    IncompatibleSchema,
    QualityGateFailed,
    SchemaMismatch,
    SourceChanged,
    CorruptInput,
)


def is_deterministic(error: BaseException) -> bool:
    """Whether ``error`` would recur on a retry of the same work (see :data:`DETERMINISTIC`)."""
    return isinstance(error, DETERMINISTIC)


def describe_validation_error(error: Exception) -> str:
    """A one-line, user-facing summary of a pydantic ``ValidationError`` (no doc links)."""
    errors = getattr(error, "errors", None)
    if not callable(errors):
        return str(error)
    parts = []
    for item in errors():
        loc = ".".join(str(x) for x in item.get("loc", ()) if x != "__root__")
        msg = str(item.get("msg", "")).removeprefix("Value error, ")
        parts.append(f"{loc}: {msg}" if loc else msg)
    return "; ".join(parts)


#: How many characters of input an error message quotes at most (:func:`excerpt`).
EXCERPT_LIMIT = 200

_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def excerpt(value: str | bytes | bytearray | memoryview, limit: int = EXCERPT_LIMIT) -> str:
    """Input (or a library's message quoting input) made fit to quote in an error message.

    Messages end up on terminals, in JSON logs that ``grep`` reads as text, and in the
    job's ``error``: raw binary there garbles the first and makes the others binary
    files. Every error that quotes source bytes quotes them through this helper.

    Parameters
    ----------
    value:
        Raw bytes (decoded as UTF-8; undecodable bytes become ``\\xNN``) or text.
    limit:
        The most characters of the escaped form kept; longer input is cut and says how
        much was left out.

    Returns
    -------
    str
        Printable text: control characters, the Unicode replacement character and other
        non-printable code points are escaped (``\\n``, ``\\x00``, ``\\ufffd``), so the
        result holds no control or undecodable bytes and at most ``limit`` characters
        of input.
    """
    text = (
        bytes(value).decode("utf-8", errors="backslashreplace")
        if isinstance(value, bytes | bytearray | memoryview)
        else str(value)
    )
    out: list[str] = []
    size = 0
    for i, ch in enumerate(text):
        if ch.isprintable() and ch != "\ufffd":
            piece = ch
        elif ch in _ESCAPES:
            piece = _ESCAPES[ch]
        elif ord(ch) < 0x100:
            piece = f"\\x{ord(ch):02x}"
        elif ord(ch) < 0x10000:
            piece = f"\\u{ord(ch):04x}"
        else:
            piece = f"\\U{ord(ch):08x}"
        if size + len(piece) > limit:
            out.append(f"... ({len(text) - i} more characters)")
            break
        out.append(piece)
        size += len(piece)
    return "".join(out)
