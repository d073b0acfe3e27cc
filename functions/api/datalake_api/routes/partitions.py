"""Partitions: register, list with stats, recompute stats, request compaction."""

from __future__ import annotations

from functools import lru_cache
from typing import Annotated

from fastapi import APIRouter, Depends, status

from datalake.config import get_settings
from datalake.services import partitions
from datalake.services.partitions import CompactionRequester
from datalake_api.deps import CorrelationDep, PrincipalDep, SessionDep
from datalake_api.models import (
    OptimizeAccepted,
    OptimizeRequest,
    OptimizeRunOut,
    Page,
    PartitionCreate,
    PartitionOut,
)
from datalake_api.params import Limit, Offset, PartitionId, PathId, TableId

router = APIRouter(prefix="/partitions", tags=["partitions"])


@lru_cache(maxsize=1)
def _requester() -> CompactionRequester:
    from datalake.aws.lambdas import LambdaCompactionRequester

    return LambdaCompactionRequester(get_settings().optimize_function)


def get_compaction_requester() -> CompactionRequester:
    """The port that starts the optimize function (overridden in tests)."""
    return _requester()


RequesterDep = Annotated[CompactionRequester, Depends(get_compaction_requester)]


@router.post("", status_code=status.HTTP_201_CREATED)
@router.post("/", status_code=status.HTTP_201_CREATED, include_in_schema=False)
def register_partition(
    body: PartitionCreate, session: SessionDep, who: PrincipalDep, cid: CorrelationDep
) -> PartitionOut:
    who.require("writer")
    part = partitions.register_partition(
        session, table_id=body.table_id, values=body.values, actor=who.subject, correlation_id=cid
    )
    return PartitionOut.model_validate(part)


@router.get("/table/{table_id}")
def list_partitions(
    table_id: TableId,
    session: SessionDep,
    who: PrincipalDep,
    limit: Limit = 100,
    offset: Offset = 0,
) -> Page[PartitionOut]:
    who.require("reader")
    items, total = partitions.list_partitions(session, table_id, limit=limit, offset=offset)
    return Page(items=[PartitionOut.model_validate(p) for p in items], total=total)


@router.get("/{partition_id}")
def get_partition(
    partition_id: PartitionId, session: SessionDep, who: PrincipalDep
) -> PartitionOut:
    who.require("reader")
    return PartitionOut.model_validate(partitions.get_partition(session, partition_id))


@router.put("/{partition_id}/stats")
def recompute_stats(
    partition_id: PartitionId, session: SessionDep, who: PrincipalDep, cid: CorrelationDep
) -> PartitionOut:
    who.require("writer")
    part = partitions.recompute_stats(session, partition_id, actor=who.subject, correlation_id=cid)
    return PartitionOut.model_validate(part)


@router.post("/table/{table_id}/optimize", status_code=status.HTTP_202_ACCEPTED)
def optimize_table(
    table_id: TableId,
    session: SessionDep,
    who: PrincipalDep,
    cid: CorrelationDep,
    requester: RequesterDep,
    body: OptimizeRequest | None = None,
) -> OptimizeAccepted:
    who.require("writer")
    req = body or OptimizeRequest()
    accepted = partitions.request_compaction(
        session,
        table_id,
        requester=requester,
        target_file_size_mb=req.target_file_size_mb,
        partition_id=req.partition_id,
        actor=who.subject,
        correlation_id=cid,
    )
    return OptimizeAccepted(**accepted)


@router.get("/table/{table_id}/optimize/{run_id}")
def optimize_run(
    table_id: TableId, run_id: PathId, session: SessionDep, who: PrincipalDep
) -> OptimizeRunOut:
    """Where an optimize run (the ``run_id`` its 202 named) is: ``ACCEPTED`` until it ends."""
    who.require("reader")
    return OptimizeRunOut(**partitions.optimize_run(session, table_id, run_id))
