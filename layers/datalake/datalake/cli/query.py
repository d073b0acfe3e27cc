"""``datalake query``: DuckDB over the committed files of the tables a query names.

Only files listed by ``GET /tables/{id}/files`` are read (one snapshot each), so a query
sees whole jobs only. DuckDB's ``httpfs`` extension is downloaded at first use, which
fails offline (and on LocalStack), so the files are fetched with boto3 into a temporary
folder that keeps their Hive-style keys, and read there with ``read_parquet(...,
hive_partitioning = true, union_by_name = true)``.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from datalake.cli.client import ApiClient, CliError, Profile

if TYPE_CHECKING:
    import pyarrow.compute as pc
    from sqlalchemy.orm import Session

    from datalake.engine.store import ObjectStore

#: ``namespace.name`` in SQL, not inside quotes (a rough cut; ``--table`` is the exact way).
_DOTTED = re.compile(r"(?<![\w.'\"])([A-Za-z_]\w*)\.([A-Za-z_]\w*)(?![\w.(])")


def named_tables(sql: str) -> list[str]:
    """The ``NAMESPACE.NAME`` words of ``sql``, in order, without repeats."""
    seen: list[str] = []
    for ns, name in _DOTTED.findall(re.sub(r"'[^']*'", "''", sql)):
        ref = f"{ns}.{name}"
        if ref not in seen:
            seen.append(ref)
    return seen


def _duckdb() -> Any:
    try:
        import duckdb
    except ImportError as e:
        raise CliError(
            "datalake query needs DuckDB: pip install duckdb (it is a dev dependency)"
        ) from e
    return duckdb


def run_query(api: ApiClient, profile: Profile, sql: str, *, tables: list[str]) -> dict[str, Any]:
    """Run ``sql`` over the named tables; return ``{"columns", "rows", "tables"}``.

    Parameters
    ----------
    api, profile:
        Where the catalog's API and the lake's objects are.
    sql:
        The query; tables appear in it as ``NAMESPACE.NAME``.
    tables:
        Tables to expose; empty = every ``NAMESPACE.NAME`` of ``sql`` that is a table.

    Raises
    ------
    CliError
        When DuckDB is missing, a table is unknown or empty, or the SQL fails.
    """
    from datalake.cli.lookups import TableNotFound, committed_files, resolve_table, s3_client

    duckdb = _duckdb()
    explicit = bool(tables)
    refs = tables or named_tables(sql)
    if not refs:
        raise CliError("the query names no table: write NAMESPACE.NAME, or pass --table")
    resolved = []
    for ref in refs:
        try:
            resolved.append((ref, resolve_table(api, ref)))
        except TableNotFound:
            if explicit:
                raise
            # A dotted word that is not a table (alias.column): DuckDB will judge it.
    if not resolved:
        raise CliError(f"no table among {', '.join(refs)}")
    con = duckdb.connect()
    s3 = s3_client(profile)
    with tempfile.TemporaryDirectory(prefix="datalake-query-") as tmp:
        used = []
        for ref, t in resolved:
            files = committed_files(api, t["id"])
            if not files:
                raise CliError(f"table {ref} has no committed data yet")
            local = []
            for f in files:
                bucket, key = f["path"].removeprefix("s3://").split("/", 1)
                dest = Path(tmp) / bucket / key
                dest.parent.mkdir(parents=True, exist_ok=True)
                try:
                    s3.download_file(bucket, key, str(dest))
                except Exception as e:
                    raise CliError(f"cannot read {f['path']}: {type(e).__name__}: {e}") from e
                local.append(str(dest))
            ns, name = t["namespace"], t["name"]
            listing = ", ".join("'" + p.replace("'", "''") + "'" for p in local)
            con.execute(f'CREATE SCHEMA IF NOT EXISTS "{ns}"')
            con.execute(
                f'CREATE VIEW "{ns}"."{name}" AS SELECT * FROM read_parquet([{listing}], '
                "hive_partitioning = true, union_by_name = true)"
            )
            used.append({"table": f"{ns}.{name}", "id": t["id"], "files": len(files)})
        try:
            cur = con.execute(sql)
            columns = [d[0] for d in cur.description or []]
            rows = [list(r) for r in cur.fetchall()]
        except duckdb.Error as e:
            raise CliError(f"query failed: {e}") from e
    return {"columns": columns, "rows": rows, "tables": used}


def to_duckdb(
    table_id: str,
    *,
    store: ObjectStore,
    connection: Any = None,
    name: str | None = None,
    session: Session | None = None,
    columns: Sequence[str] | None = None,
    filter: pc.Expression | None = None,
) -> Any:
    """A DuckDB relation over :func:`datalake.services.reading.read_table`, read from the
    catalog directly (DuckDB is a development dependency: the library never imports it).

    Parameters
    ----------
    table_id:
        The table.
    store:
        Where the files are.
    connection:
        A ``duckdb.DuckDBPyConnection``; default a new in-memory one.
    name:
        Also register the Arrow table as a view of that name on the connection.
    session, columns, filter:
        As for :func:`~datalake.services.reading.read_table`.

    Returns
    -------
    duckdb.DuckDBPyRelation

    Raises
    ------
    CliError
        When DuckDB is not installed.
    """
    from datalake.services.reading import read_table

    duckdb = _duckdb()
    data = (
        read_table(session, table_id, store=store, columns=columns, filter=filter)
        if session is not None
        else read_table(table_id, store=store, columns=columns, filter=filter)
    )
    con = connection if connection is not None else duckdb.connect()
    if name:
        con.register(name, data)
    return con.from_arrow(data)
