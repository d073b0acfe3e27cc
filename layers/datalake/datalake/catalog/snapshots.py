"""Table snapshots: which data files one consistent listing of a table holds.

Every catalog transaction that changes a table's committed file set (a job's Commit, a
compaction's swap) starts with :func:`begin_change`, which takes the table's next file
sequence number::

    UPDATE datalake_tables SET file_seq = file_seq + 1 WHERE id = :table

and stamps it on the files it publishes (``committed_seq``) and on those it retires
(``replaced_seq``), with the one ``now`` of the change as their ``committed_at`` /
``replaced_at``. The UPDATE holds the table row's lock until the transaction ends (on
SQLite every transaction holds the database from BEGIN), so the numbers are handed out
in commit order: once a reader sees ``file_seq = N``, every change up to N is committed
and no later one is. Snapshot N of the table is then (:func:`in_snapshot`, the one place
this rule lives)::

    committed_seq <= N  and  (replaced_seq > N  or  (replaced_seq is null and COMMITTED))

Integers, not timestamps: no clock, precision or in-flight transaction can move a file
across a snapshot's boundary, and a swap's inputs leave at the very number its outputs
enter, so a snapshot sees exactly one of the two sets.

A snapshot is complete as long as the rows (and objects) of its files exist. Replaced
files are only deleted after :func:`mark_swept` has raised the table's ``swept_seq`` to
the highest ``replaced_seq`` about to go, in its own committed transaction; snapshot N is
intact iff ``swept_seq <= N``, which a listing checks *after* reading its page
(:func:`check_intact`), so it never returns a page with a hole. Compaction sweeps a
replaced file only once ``replaced_file_retention_seconds`` have passed since it was
replaced, and a snapshot is refused once it is that old (:func:`resolve`), so the objects
of the files a usable snapshot lists are still there.

Tokens are opaque to clients and signed (HMAC with the deployment's JWT secret), so a
client cannot stretch a snapshot's life or point it at another table.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import ColumnElement, and_, or_, select, update
from sqlalchemy.orm import Session

from datalake.catalog.models import DataFile, DataLakeTable, utcnow
from datalake.config import get_settings
from datalake.domain.vocabulary import FileStatus
from datalake.errors import InvalidInput, NotFound, SnapshotExpired

_TOKEN_VERSION = "1"


@dataclass(frozen=True)
class Change:
    """One change of a table's committed file set: its number and its one timestamp."""

    seq: int
    at: datetime


@dataclass(frozen=True)
class Snapshot:
    """State ``seq`` of a table's files, as a reader took it at ``taken_at``."""

    table_id: str
    seq: int
    taken_at: datetime

    def token(self) -> str:
        """The opaque, signed token a client passes back as ``snapshot=``."""
        ms = int(self.taken_at.timestamp() * 1000)
        body = f"{_TOKEN_VERSION}.{self.seq}.{ms}"
        return f"{body}.{_sign(self.table_id, body)}"

    def expires_at(self, retention_seconds: int) -> datetime | None:
        """When the snapshot stops being served (None: only once a file of it is swept)."""
        if retention_seconds <= 0:
            return None
        return self.taken_at + timedelta(seconds=retention_seconds)


def _sign(table_id: str, body: str) -> str:
    key = get_settings().jwt_secret.encode()
    mac = hmac.new(key, f"{table_id}:{body}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac[:12]).decode().rstrip("=")


def parse_token(table_id: str, token: str) -> Snapshot:
    """The snapshot a token names.

    Raises
    ------
    InvalidInput
        When the token is malformed, forged, or one of another table.
    """
    parts = token.split(".")
    if len(parts) != 4 or parts[0] != _TOKEN_VERSION:
        raise InvalidInput("snapshot is not a snapshot token; list again without it")
    body = ".".join(parts[:3])
    if not hmac.compare_digest(parts[3], _sign(table_id, body)):
        raise InvalidInput("snapshot does not belong to this table; list again without it")
    try:
        seq, ms = int(parts[1]), int(parts[2])
        taken_at = datetime.fromtimestamp(ms / 1000, UTC)
    except (ValueError, OverflowError, OSError) as e:
        raise InvalidInput("snapshot is not a snapshot token; list again without it") from e
    return Snapshot(table_id=table_id, seq=seq, taken_at=taken_at)


def encode_cursor(snapshot: Snapshot, key: str, file_id: str) -> str:
    """A cursor: the snapshot and the (key, id) of the last file already returned."""
    raw = json.dumps([snapshot.token(), key, file_id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def parse_cursor(table_id: str, cursor: str) -> tuple[Snapshot, tuple[str, str]]:
    """The snapshot and the position a cursor names.

    Raises
    ------
    InvalidInput
        When the cursor is malformed or names a snapshot of another table.
    """
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        token, key, file_id = json.loads(raw)
    except (binascii.Error, ValueError, TypeError) as e:
        raise InvalidInput("cursor is not a cursor of this listing; list again") from e
    if not all(isinstance(x, str) for x in (token, key, file_id)):
        raise InvalidInput("cursor is not a cursor of this listing; list again")
    return parse_token(table_id, token), (key, file_id)


# ------------------------------------------------------------------------- catalog


def begin_change(session: Session, table_id: str) -> Change:
    """Take the table's next file sequence number, locking its row until the commit.

    Call it first in a transaction that commits or replaces files of the table, before
    it updates any partition row (one lock order everywhere: table, then partitions).

    Raises
    ------
    NotFound
        When there is no such table.
    """
    result = session.execute(
        update(DataLakeTable)
        .where(DataLakeTable.id == table_id)
        # updated_at stays: it tells when the table's configuration changed.
        .values(file_seq=DataLakeTable.file_seq + 1, updated_at=DataLakeTable.updated_at)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        raise NotFound(f"table {table_id} not found")
    seq = session.scalar(select(DataLakeTable.file_seq).where(DataLakeTable.id == table_id))
    return Change(seq=int(seq or 0), at=utcnow())


def in_snapshot(seq: int) -> ColumnElement[bool]:
    """The rule: the files of snapshot ``seq`` (combine with a ``table_id`` filter)."""
    return and_(
        DataFile.committed_seq <= seq,
        or_(
            DataFile.replaced_seq > seq,
            and_(DataFile.replaced_seq.is_(None), DataFile.status == FileStatus.COMMITTED),
        ),
    )


def _seqs(session: Session, table_id: str) -> tuple[int, int]:
    row = session.execute(
        select(DataLakeTable.file_seq, DataLakeTable.swept_seq).where(
            DataLakeTable.id == table_id
        )
    ).one_or_none()
    if row is None:
        raise NotFound(f"table {table_id} not found")
    return int(row.file_seq or 0), int(row.swept_seq or 0)


def resolve(
    session: Session,
    table_id: str,
    token: str | Snapshot | None,
    *,
    retention_seconds: int,
    now: datetime | None = None,
) -> Snapshot:
    """The snapshot to list: the table's current state, or the one ``token`` names.

    Raises
    ------
    InvalidInput
        For a malformed or foreign token.
    SnapshotExpired
        When the snapshot is older than the retention period, or compaction has deleted
        a file of it already.
    """
    now = now or utcnow()
    current, swept = _seqs(session, table_id)
    if token is None:
        return Snapshot(table_id=table_id, seq=current, taken_at=now)
    snap = token if isinstance(token, Snapshot) else parse_token(table_id, token)
    if snap.seq > current:
        raise InvalidInput("snapshot is not a snapshot of this table; list again without it")
    if retention_seconds > 0 and now - snap.taken_at >= timedelta(seconds=retention_seconds):
        raise SnapshotExpired(
            f"snapshot expired, list again: it was taken at {snap.taken_at.isoformat()} and "
            f"replaced files are kept for {retention_seconds} s"
        )
    _check(snap, swept)
    return snap


def check_intact(session: Session, snapshot: Snapshot) -> None:
    """Refuse a page read from ``snapshot`` if compaction has deleted files of it since.

    Call it after reading the page: a sweep raises ``swept_seq`` before it deletes rows.
    """
    _check(snapshot, _seqs(session, snapshot.table_id)[1])


def _check(snap: Snapshot, swept: int) -> None:
    if swept > snap.seq:
        raise SnapshotExpired(
            "snapshot expired, list again: compaction has deleted files it lists"
        )


def mark_swept(session: Session, table_id: str, through_seq: int) -> None:
    """Record that files replaced up to change ``through_seq`` are about to be deleted.

    Commit this before deleting any of them: snapshots older than it are refused then.
    """
    session.execute(
        update(DataLakeTable)
        .where(DataLakeTable.id == table_id, DataLakeTable.swept_seq < through_seq)
        .values(swept_seq=through_seq, updated_at=DataLakeTable.updated_at)
        .execution_options(synchronize_session=False)
    )
