"""Tables: create, read, list, update, soft-delete, and their committed files."""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Query, status

from datalake.catalog.models import DataFile, DataLakeTable
from datalake.config import get_settings
from datalake.domain.layout import table_prefix
from datalake.domain.schema import Schema
from datalake.services import iceberg_refs, tables, verify
from datalake_api.deps import CorrelationDep, PrincipalDep, PublisherDep, ReaderDep, SessionDep
from datalake_api.models import (
    DataFileOut,
    FilePage,
    Page,
    TableCreate,
    TableOut,
    TableUpdate,
    VerifyOut,
)
from datalake_api.params import BigLimit, Instant, Limit, NameFilter, Offset, TableId

router = APIRouter(prefix="/tables", tags=["tables"])
#: Seconds a verify call spends reading objects at most (API Gateway answers within 29 s;
#: the Iceberg publish of files it took out comes after the reads).
VERIFY_BUDGET_SECONDS = 16.0


def table_out(session: SessionDep, table: DataLakeTable) -> TableOut:
    return answer(
        table, tables.current_schema(session, table), iceberg_refs.reference(session, table)
    )


def answer(row: Any, schema: Schema, iceberg: dict[str, Any] | None) -> TableOut:
    """A table's answer from its columns (an ORM table or a read-only row), its current
    schema and its Iceberg reference."""
    out = TableOut.model_validate(row)
    out.schema_ = schema.to_json() if len(schema) else None
    out.location = f"s3://{get_settings().lake_bucket}/{table_prefix(row.namespace, row.name)}/"
    out.iceberg = iceberg
    return out


def file_out(f: DataFile) -> DataFileOut:
    return DataFileOut(
        id=f.id,
        path=f"s3://{f.bucket}/{f.key}",
        partition=f.partition_values,
        record_count=f.record_count,
        size_bytes=f.size_bytes,
        checksum=f.checksum,
        schema_version=f.schema_version,
        job_id=f.job_id,
        committed_at=f.committed_at,
        verified_at=f.verified_at,
    )


@router.post("/", status_code=status.HTTP_201_CREATED, response_model_by_alias=True)
@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model_by_alias=True,
    include_in_schema=False,
)
def create_table(
    body: TableCreate, session: SessionDep, who: PrincipalDep, cid: CorrelationDep
) -> TableOut:
    who.require("admin")
    table = tables.create_table(
        session,
        name=body.name,
        namespace=body.namespace,
        schema=body.schema_,
        partitioning=body.partitioning,
        schema_policy=body.schema_policy,
        compatibility=body.compatibility,
        format=body.format,
        description=body.description,
        max_rejected_ratio=body.max_rejected_ratio,
        actor=who.subject,
        correlation_id=cid,
    )
    return table_out(session, table)


@router.get("/")
@router.get("", include_in_schema=False)
def list_tables(
    session: SessionDep,
    who: PrincipalDep,
    limit: Limit = 100,
    offset: Offset = 0,
    namespace: NameFilter = None,
) -> Page[TableOut]:
    who.require("reader")
    items, total = tables.list_tables(session, limit=limit, offset=offset, namespace=namespace)
    return Page(items=[table_out(session, t) for t in items], total=total)


@router.get("/{table_id}")
def get_table(table_id: TableId, session: SessionDep, who: PrincipalDep) -> TableOut:
    who.require("reader")
    view = tables.get_table_view(session, table_id)
    return answer(view.row, view.schema, view.iceberg)


@router.put("/{table_id}")
def update_table(
    table_id: TableId,
    body: TableUpdate,
    session: SessionDep,
    who: PrincipalDep,
    cid: CorrelationDep,
) -> TableOut:
    who.require("admin")
    changes = body.model_dump(exclude_unset=True)
    table = tables.update_table(session, table_id, changes, actor=who.subject, correlation_id=cid)
    return table_out(session, table)


@router.delete("/{table_id}")
def delete_table(
    table_id: TableId, session: SessionDep, who: PrincipalDep, cid: CorrelationDep
) -> TableOut:
    who.require("admin")
    table = tables.delete_table(session, table_id, actor=who.subject, correlation_id=cid)
    return table_out(session, table)


@router.get("/{table_id}/files")
def list_files(
    table_id: TableId,
    session: SessionDep,
    who: PrincipalDep,
    limit: BigLimit = 1000,
    offset: Offset = 0,
    snapshot: Annotated[str | None, Query(max_length=200)] = None,
    cursor: Annotated[str | None, Query(max_length=4000)] = None,
) -> FilePage:
    """The committed files of one snapshot of the table, ordered by key.

    The first call (no ``snapshot``/``cursor``) pins the table's current state and names
    it in ``snapshot``; later pages pass ``cursor=<next>`` (or ``snapshot=`` with
    ``offset``) and list that same state, whatever compaction or jobs committed since.
    An expired snapshot is a 409 ("snapshot expired, list again").
    """
    who.require("reader")
    listing = tables.list_files(
        session, table_id, limit=limit, offset=offset, snapshot=snapshot, cursor=cursor
    )
    return FilePage(
        items=[file_out(f) for f in listing.items],
        total=listing.total,
        snapshot=listing.token,
        next=listing.next,
        expires_at=listing.expires_at,
    )


@router.post("/{table_id}/verify")
def verify_table(
    table_id: TableId,
    session: SessionDep,
    who: PrincipalDep,
    cid: CorrelationDep,
    store: ReaderDep,
    publish: PublisherDep,
    limit: Annotated[int, Query(ge=1, le=verify.MAX_LIMIT)] = verify.DEFAULT_LIMIT,
    since: Instant = None,
) -> VerifyOut:
    """Re-read up to ``limit`` committed files and compare them with their checksums;
    files taken out leave the Iceberg table before the answer (``iceberg_published``)."""
    who.require("writer")
    report = verify.verify_table(
        session,
        table_id,
        store=store,
        limit=limit,
        since=since,
        deadline=time.monotonic() + VERIFY_BUDGET_SECONDS,
        actor=who.subject,
        correlation_id=cid,
        publish=publish,
    )
    return VerifyOut.model_validate(report.__dict__)
