"""The ``datalake`` commands (typer + rich); :func:`run` is the entry point.

Every command takes ``--json`` (one JSON document on stdout). Every failure is one line on
stderr, ``error: ...``, and a non-zero exit status (1: the API refused or a job failed;
2: bad usage; 130: interrupted); ``--debug`` adds the traceback.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
import traceback
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from datalake.cli.client import REPO_ROOT, ApiClient, CliError, Profile, resolve_profile
from datalake.cli.lookups import (
    API,
    TableNotFound,
    committed_files,
    parse_options,
    resolve_table,
    s3_client,
    s3_error,
    split_name,
    table_file_count,
)

#: Options that belong to the whole program but may be written after the command too
#: (``datalake tables list --api-url ...``): :func:`_hoist` moves them to the front.
GLOBAL_VALUED = ("--api-url", "--token", "--profile")
GLOBAL_FLAGS = ("--debug",)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("datalake")
    except PackageNotFoundError:
        return "unknown"


@dataclass
class State:
    """What the global options chose; the profile is resolved on first use."""

    api_url: str | None = None
    token: str | None = None
    profile_name: str | None = None
    debug: bool = False
    _profile: Profile | None = None
    _api: ApiClient | None = None

    @property
    def profile(self) -> Profile:
        if self._profile is None:
            self._profile = resolve_profile(
                self.profile_name, api_url=self.api_url, token=self.token
            )
        return self._profile

    @property
    def api(self) -> ApiClient:
        if self._api is None:
            self._api = self.profile.client()
            # One id for every call of this command: the job's logs carry it end to end.
            self._api.correlation_id = f"cli-{uuid.uuid4()}"
        return self._api


STATE = State()
out = Console(soft_wrap=False)
err = Console(stderr=True)

app = typer.Typer(
    name="datalake",
    help="Ingest files into the data lake and manage its tables, jobs and schemas.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
tables_app = typer.Typer(help="Tables: list, show, create, delete.", no_args_is_help=False)
sources_app = typer.Typer(help="Data sources (S3 prefixes whose uploads start jobs).")
jobs_app = typer.Typer(help="Ingestion jobs: list, show, watch, cancel, retry.")
schema_app = typer.Typer(help="Schema versions: show, history, diff, apply (roll back).")
app.add_typer(tables_app, name="tables")
app.add_typer(sources_app, name="sources")
app.add_typer(jobs_app, name="jobs")
app.add_typer(schema_app, name="schema")

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")]
TableArg = Annotated[str, typer.Argument(help="The table, as NAMESPACE.NAME or its id.")]
JobArg = Annotated[str, typer.Argument(help="The job's id.")]


# ================================================================================ output
def emit(obj: Any, as_json: bool, render: Any = None) -> None:
    """Print ``obj`` as JSON, or through ``render(obj)`` (default: a key/value table)."""
    if as_json:
        sys.stdout.write(json.dumps(obj, indent=2, default=str) + "\n")
        return
    if render is not None:
        render(obj)
    elif isinstance(obj, dict):
        out.print(kv_table(obj))
    else:
        out.print(obj)


def kv_table(obj: dict[str, Any], title: str | None = None) -> Table:
    """A two-column table of a JSON object (nested values as compact JSON)."""
    t = Table(show_header=False, title=title, box=None, pad_edge=False)
    t.add_column("field", style="bold")
    t.add_column("value", overflow="fold")
    for k, v in obj.items():
        t.add_row(str(k), v if isinstance(v, str) else json.dumps(v, default=str))
    return t


def list_table(items: list[dict[str, Any]], columns: list[str], title: str | None = None) -> Table:
    """A table of ``items`` showing ``columns``."""
    t = Table(title=title)
    for c in columns:
        t.add_column(c, overflow="fold")
    for item in items:
        t.add_row(*[_cell(item.get(c)) for c in columns])
    return t


def _cell(v: Any) -> str:
    if v is None:
        return ""
    return v if isinstance(v, str) else json.dumps(v, default=str)


def note(msg: str) -> None:
    """A remark for the user, on stderr (stdout stays for results)."""
    err.print(msg, highlight=False, markup=False, soft_wrap=True)


# ================================================================================ helpers

# ================================================================================ root
def _version_callback(value: bool) -> None:
    if value:
        sys.stdout.write(f"datalake {_version()}\n")
        raise typer.Exit()


@app.callback()
def root(
    api_url: Annotated[
        str | None,
        typer.Option(help="The API's base URL (default: DATALAKE_API_URL, else the profile)."),
    ] = None,
    token: Annotated[
        str | None,
        typer.Option(help="A bearer token (default: DATALAKE_TOKEN, else the profile)."),
    ] = None,
    profile: Annotated[
        str | None,
        typer.Option(
            help="A profile of ~/.config/datalake/config.toml (or DATALAKE_CONFIG); "
            "'local' (the default) reads .datalake/local.env."
        ),
    ] = None,
    debug: Annotated[bool, typer.Option(help="Show the traceback of an error.")] = False,
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version_callback, is_eager=True, help="Print the version."
        ),
    ] = False,
) -> None:
    """Ingest files into the data lake and manage its tables, jobs and schemas.

    Connection options may also be written after the command.
    """
    STATE.api_url, STATE.token, STATE.profile_name = api_url, token, profile
    STATE.debug = STATE.debug or debug


# ================================================================================ local stack
def _local_modules() -> tuple[Any, Any]:
    local = REPO_ROOT / "infra" / "local"
    if not (local / "project.py").exists():
        raise CliError("up/down/status need a checkout of the repository (infra/local not found)")
    if str(local) not in sys.path:
        sys.path.insert(0, str(local))
    if not os.environ.get("DATALAKE_LOCALSTACK_PORT"):
        # A stack started on another port (DATALAKE_LOCALSTACK_PORT=... make up) wrote
        # its endpoint into local.env: status and down must look there, not at 4566.
        from urllib.parse import urlsplit

        from datalake.cli.client import load_local_env

        port = urlsplit(load_local_env().get("AWS_ENDPOINT_URL", "")).port
        if port:
            os.environ["DATALAKE_LOCALSTACK_PORT"] = str(port)
    import project
    import stack

    return project, stack


@contextlib.contextmanager
def _stdout_to_stderr() -> Iterator[None]:
    """Send everything written to fd 1 (subprocesses too) to stderr, for ``--json``."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        os.dup2(2, 1)
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


@app.command()
def up(as_json: JsonOpt = False) -> None:
    """Start the local stack (LocalStack, the template, the catalog) and keep it running."""
    project, stack = _local_modules()
    with _stdout_to_stderr() if as_json else contextlib.nullcontext():
        try:
            env = project.ensure_stack()
        except stack.StackError as e:
            raise CliError(str(e).splitlines()[0] if str(e) else "the local stack failed") from e
    summary = {
        "up": True,
        "api_url": env.get("DATALAKE_API_URL"),
        "env_file": str(stack.ENV_FILE),
    }
    emit(summary, as_json, lambda s: out.print(
        f"local stack up; API at {s['api_url']}\nsettings in {s['env_file']}"))


@app.command()
def down(as_json: JsonOpt = False) -> None:
    """Stop the local stack."""
    _, stack = _local_modules()
    with _stdout_to_stderr() if as_json else contextlib.nullcontext():
        stack.down()
    emit({"up": False}, as_json, lambda s: out.print("local stack stopped"))


@app.command()
def status(as_json: JsonOpt = False) -> None:
    """Whether the local stack is up, its stacks, and the API's health."""
    _, stack = _local_modules()
    info = dict(stack.status())
    if info.get("up"):
        profile = STATE.profile
        if profile.api_url:
            from datalake.cli.client import ApiUnreachable

            try:
                code, body = ApiClient(profile.api_url, None, timeout=10).request("GET", "/health")
                info["api"] = {"url": profile.api_url, "status": code, "health": body}
            except ApiUnreachable as e:
                info["api"] = {"url": profile.api_url, "error": str(e)}
    emit(info, as_json)


# ================================================================================ tables
TABLE_COLUMNS = ["id", "namespace", "name", "current_schema_version", "schema_policy"]


@tables_app.callback(invoke_without_command=True)
def tables_root(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Tables: list, show, create, delete (``datalake tables`` alone lists them)."""
    if ctx.invoked_subcommand is None:
        tables_list(namespace=None, as_json=as_json)


@tables_app.command("list")
def tables_list(
    namespace: Annotated[str | None, typer.Option(help="Only this namespace.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """List the live tables."""
    page = STATE.api.get(f"{API}/tables/", namespace=namespace, limit=1000)
    emit(page, as_json, lambda p: out.print(list_table(p["items"], TABLE_COLUMNS,
                                                       f"{p['total']} table(s)")))


@tables_app.command("show")
def tables_show(table: TableArg, as_json: JsonOpt = False) -> None:
    """Show a table: its settings, schema and partitioning."""
    emit(resolve_table(STATE.api, table), as_json)


def _load_json_arg(value: str, what: str) -> Any:
    """``value`` as JSON, or the JSON in the file it names (``@file`` or a path)."""
    path = Path(value.removeprefix("@"))
    text = path.read_text() if (value.startswith("@") or path.exists()) else value
    try:
        return json.loads(text)
    except ValueError as e:
        raise CliError(f"{what} is neither JSON nor a file of JSON: {e}") from e


def _partitioning(specs: list[str] | None) -> list[dict[str, str]]:
    fields = []
    for spec in specs or []:
        column, _, rest = spec.partition(":")
        transform, _, name = rest.partition(":")
        field = {"column": column, "transform": transform or "identity"}
        if name:
            field["name"] = name
        fields.append(field)
    return fields


@tables_app.command("create")
def tables_create(
    table: Annotated[str, typer.Argument(help="NAMESPACE.NAME of the new table.")],
    schema: Annotated[
        str | None,
        typer.Option(help='The schema: JSON {"fields": [...]} or a file of it; '
                     "omitted = inferred from the first ingested file."),
    ] = None,
    partition: Annotated[
        list[str] | None,
        typer.Option(help="A partition field COLUMN:TRANSFORM[:NAME] (transforms: identity, day, "
                     "month, bucket[16], ...); repeat for several."),
    ] = None,
    policy: Annotated[
        str | None, typer.Option(help="Schema policy: evolve, freeze or discard_columns.")
    ] = None,
    compatibility: Annotated[
        str | None, typer.Option(help="BACKWARD (default), FORWARD, FULL, NONE, *_TRANSITIVE.")
    ] = None,
    max_rejected_ratio: Annotated[
        float | None, typer.Option(help="Fail a job rejecting more than this share of records.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Create a table."""
    ns, name = split_name(table)
    body: dict[str, Any] = {"name": name, "namespace": ns}
    if schema:
        body["schema"] = _load_json_arg(schema, "--schema")
    if partition:
        body["partitioning"] = _partitioning(partition)
    if policy:
        body["schema_policy"] = policy
    if compatibility:
        body["compatibility"] = compatibility
    if max_rejected_ratio is not None:
        body["max_rejected_ratio"] = max_rejected_ratio
    emit(STATE.api.call("POST", f"{API}/tables/", body), as_json)


@tables_app.command("delete")
def tables_delete(
    table: TableArg,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Soft-delete a table (its data is kept; it leaves lists and refuses ingestion)."""
    t = resolve_table(STATE.api, table)
    if not yes:
        if not sys.stdin.isatty():
            raise CliError("deleting a table needs --yes when not run from a terminal")
        typer.confirm(f"Delete table {t['namespace']}.{t['name']} ({t['id']})?", abort=True)
    result = STATE.api.call("DELETE", f"{API}/tables/{t['id']}")
    emit(result if isinstance(result, dict) else {"deleted": t["id"]}, as_json)


@app.command("files")
def files(table: TableArg, as_json: JsonOpt = False) -> None:
    """List a table's committed data files."""
    t = resolve_table(STATE.api, table)
    listing = committed_files(STATE.api, t["id"])
    emit({"items": listing, "total": len(listing)}, as_json, lambda p: out.print(
        list_table(p["items"], ["path", "record_count", "size_bytes", "partition"],
                   f"{p['total']} file(s)")))


# ================================================================================ sources
@sources_app.callback(invoke_without_command=True)
def sources_root(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Data sources (``datalake sources`` alone lists them)."""
    if ctx.invoked_subcommand is None:
        sources_list(as_json=as_json)


@sources_app.command("list")
def sources_list(as_json: JsonOpt = False) -> None:
    """List the data sources."""
    page = STATE.api.get(f"{API}/sources", limit=1000)
    emit(page, as_json, lambda p: out.print(list_table(
        p["items"], ["id", "name", "table_id", "bucket", "prefix", "format", "ignore"])))


@sources_app.command("add")
def sources_add(
    name: Annotated[str, typer.Argument(help="The source's name.")],
    table: Annotated[str, typer.Option(help="The table it feeds (NAMESPACE.NAME or id).")],
    prefix: Annotated[str, typer.Option(help="The key prefix whose uploads start jobs.")],
    bucket: Annotated[
        str | None, typer.Option(help="The bucket (default: the landing bucket).")
    ] = None,
    fmt: Annotated[
        str | None, typer.Option("--format", help="csv, jsonl, parquet or avro.")
    ] = None,
    option: Annotated[
        list[str] | None, typer.Option(help="A job option key=value (repeatable).")
    ] = None,
    ignore: Annotated[
        list[str] | None,
        typer.Option(help="A glob of uploads that start no job, e.g. '*.tmp' (repeatable)."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Add a data source: objects created under BUCKET/PREFIX are ingested into TABLE.

    Markers (_SUCCESS, _committed_*, _started_*, *.crc), folder keys and empty objects
    never start a job; --ignore names more.
    """
    t = resolve_table(STATE.api, table)
    bucket = bucket or STATE.profile.landing_bucket
    if not bucket:
        raise CliError("no landing bucket known: pass --bucket")
    body: dict[str, Any] = {"name": name, "table_id": t["id"], "bucket": bucket, "prefix": prefix}
    if fmt:
        body["format"] = fmt
    if option:
        body["options"] = parse_options(option)
    if ignore:
        body["ignore"] = list(ignore)
    emit(STATE.api.call("POST", f"{API}/sources", body), as_json)


@sources_app.command("delete")
def sources_delete(
    source: Annotated[str, typer.Argument(help="The source's id (or a unique prefix of it).")],
    as_json: JsonOpt = False,
) -> None:
    """Disable a data source: later uploads under its prefix start nothing."""
    emit(STATE.api.call("DELETE", f"{API}/sources/{source}"), as_json)


# ================================================================================ ingest
def upload_paths(profile: Profile, paths: list[Path], ns: str, name: str) -> list[str]:
    """Upload local files (folders: every file under them) to the landing bucket.

    Returns the ``s3://`` URIs to ingest: the one object, or the upload's prefix.
    """
    bucket = profile.landing_bucket
    if not bucket:
        raise CliError("no landing bucket known (DATALAKE_LANDING_BUCKET or the profile's "
                       "landing_bucket)")
    files: list[tuple[Path, str]] = []
    for p in paths:
        if p.is_dir():
            for f in sorted(p.rglob("*")):
                if f.is_file() and not any(part.startswith(".") for part in f.relative_to(p).parts):
                    files.append((f, f.relative_to(p).as_posix()))
        else:
            files.append((p, p.name))
    if not files:
        raise CliError("nothing to upload: the folders given hold no files")
    # Its own prefix per run, outside any data source's prefix, so that only this job reads it.
    prefix = f"cli-uploads/{ns}/{name}/{uuid.uuid4().hex}/"
    s3 = s3_client(profile)
    for f, rel in files:
        try:
            s3.upload_file(str(f), bucket, prefix + rel)
        except Exception as e:
            raise s3_error(e, f"cannot upload {f} to s3://{bucket}/{prefix}{rel}") from e
    if len(files) == 1:
        return [f"s3://{bucket}/{prefix}{files[0][1]}"]
    return [f"s3://{bucket}/{prefix}"]


@app.command()
def ingest(
    paths: Annotated[
        list[str], typer.Argument(help="Local files or folders (uploaded), or s3:// URIs.")
    ],
    table: Annotated[str, typer.Option(help="The table, NAMESPACE.NAME or its id.")],
    create: Annotated[
        bool, typer.Option(help="Create the table NAMESPACE.NAME if it does not exist.")
    ] = False,
    partition: Annotated[
        list[str] | None,
        typer.Option(help="With --create: a partition field COLUMN:TRANSFORM[:NAME] of the new "
                     "table, as for tables create (repeatable)."),
    ] = None,
    fmt: Annotated[
        str | None,
        typer.Option("--format", help="csv, jsonl, parquet or avro (default: the extension)."),
    ] = None,
    wait: Annotated[
        bool, typer.Option(help="Follow the job to its end (a progress bar), then summarise.")
    ] = False,
    option: Annotated[
        list[str] | None,
        typer.Option(help="A job option key=value, e.g. batch_size=5000 (repeatable)."),
    ] = None,
    max_retries: Annotated[
        int | None, typer.Option(help="Retries per batch (default 2).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Ingest files into a table: local paths are uploaded first, s3:// URIs read in place."""
    api, profile = STATE.api, STATE.profile
    local = [Path(p) for p in paths if not p.startswith("s3://")]
    for p in local:
        if not p.exists():
            raise CliError(f"no such file or folder: {p}")
    if partition and not create:
        raise CliError("--partition applies to the table --create creates; change an existing "
                       "table's partitioning with the API (PUT /tables/{id})")
    fields = _partitioning(partition)
    try:
        t = resolve_table(api, table)
    except TableNotFound:
        if not create:
            raise
        ns, name = split_name(table)
        new: dict[str, Any] = {"name": name, "namespace": ns}
        if fields:
            new["partitioning"] = fields
        t = api.call("POST", f"{API}/tables/", new)
        note(f"created table {ns}.{name} ({t['id']})")
    else:
        # A re-run of the same command is fine; a different layout would be silently lost.
        have = [(f.get("column"), f.get("transform")) for f in t.get("partitioning") or []]
        if fields and have != [(f["column"], f["transform"]) for f in fields]:
            raise CliError(f"table {table} exists with another partitioning ({have or 'none'}); "
                           "--partition only applies when --create creates the table")
    sources = [p for p in paths if p.startswith("s3://")]
    if local:
        sources += upload_paths(profile, local, t["namespace"], t["name"])
    body: dict[str, Any] = {"table_id": t["id"], "sources": sources}
    if fmt:
        body["format"] = fmt
    if option:
        body["options"] = parse_options(option)
    if max_retries is not None:
        body["max_retries"] = max_retries
    # The same key on a retried POST returns the same job, never a second one.
    job = api.call("POST", f"{API}/ingestion/jobs", body,
                   headers={"Idempotency-Key": str(uuid.uuid4())})
    job = api.call("POST", f"{API}/ingestion/jobs/{job['id']}/start")
    if not wait:
        emit(job, as_json, lambda j: out.print(
            f"job {j['id']} {j['status']} ({', '.join(sources)}); "
            f"follow it with: datalake jobs watch {j['id']}"))
        return
    finish(watch_job(api, job["id"], as_json=as_json), as_json)


def finish(job: dict[str, Any], as_json: bool) -> None:
    """Print a finished job (and its table's file count now); exit 1 unless it succeeded."""
    from datalake.cli.progress import summary_table

    def render(j: dict[str, Any]) -> None:
        # Compaction merges the job's files afterwards: the table's count is its own row.
        out.print(summary_table(j, table_files=table_file_count(STATE.api, j["table_id"])))

    emit(job, as_json, render)
    if job["status"] != "SUCCEEDED":
        raise CliError(f"job {job['id']} {job['status']}: {job.get('error') or 'no error given'}")


def watch_job(api: ApiClient, job_id: str, *, as_json: bool) -> dict[str, Any]:
    """Follow a job to its end; Ctrl-C offers to cancel it."""
    from datalake.cli.progress import follow

    try:
        return follow(api, job_id, console=err, quiet=as_json)
    except KeyboardInterrupt:
        interactive = sys.stdin.isatty() and sys.stderr.isatty()
        if interactive:
            try:
                cancel = typer.confirm(f"\nCancel job {job_id}?", default=False, err=True)
            except (KeyboardInterrupt, typer.Abort):
                cancel = False
            if cancel:
                api.call("POST", f"{API}/ingestion/jobs/{job_id}/cancel")
                raise Interrupted(f"job {job_id} cancelled") from None
        raise Interrupted(
            f"stopped watching; job {job_id} keeps running (datalake jobs cancel {job_id})"
        ) from None


class Interrupted(CliError):
    """Ctrl-C: exit 130, as a shell does."""

    exit_code = 130


# ================================================================================ jobs
JOB_COLUMNS = ["id", "status", "records_read", "records_written", "records_rejected",
               "batches_total", "created_at"]


@jobs_app.callback(invoke_without_command=True)
def jobs_root(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Ingestion jobs (``datalake jobs`` alone lists them)."""
    if ctx.invoked_subcommand is None:
        jobs_list(table=None, status=None, limit=50, as_json=as_json)


@jobs_app.command("list")
def jobs_list(
    table: Annotated[str | None, typer.Option(help="Only this table's jobs.")] = None,
    status: Annotated[
        str | None, typer.Option(help="Only jobs in this status (RUNNING, FAILED, ...).")
    ] = None,
    limit: Annotated[int, typer.Option(help="At most this many (newest first).")] = 50,
    as_json: JsonOpt = False,
) -> None:
    """List ingestion jobs."""
    table_id = resolve_table(STATE.api, table)["id"] if table else None
    page = STATE.api.get(f"{API}/ingestion/jobs", table_id=table_id, status=status, limit=limit)
    emit(page, as_json, lambda p: out.print(list_table(p["items"], JOB_COLUMNS,
                                                       f"{p['total']} job(s)")))


@jobs_app.command("show")
def jobs_show(
    job: JobArg,
    batches: Annotated[bool, typer.Option(help="Include the job's batches.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Show a job (and its batches)."""
    data = dict(STATE.api.call("GET", f"{API}/ingestion/jobs/{job}"))
    if batches:
        data["batches"] = STATE.api.get(f"{API}/ingestion/jobs/{job}/batches", limit=1000)["items"]

    def render(d: dict[str, Any]) -> None:
        from datalake.cli.progress import summary_table

        out.print(summary_table(d))
        if batches:
            out.print(list_table(d["batches"], ["seq", "status", "attempts", "records_read",
                                                "records_written", "records_rejected", "error"]))

    emit(data, as_json, render)


@jobs_app.command("watch")
def jobs_watch(job: JobArg, as_json: JsonOpt = False) -> None:
    """Follow a job to its end with a progress bar, then summarise it."""
    finish(watch_job(STATE.api, job, as_json=as_json), as_json)


@jobs_app.command("cancel")
def jobs_cancel(job: JobArg, as_json: JsonOpt = False) -> None:
    """Cancel a pending or running job: nothing of it is committed."""
    emit(STATE.api.call("POST", f"{API}/ingestion/jobs/{job}/cancel"), as_json)


@jobs_app.command("retry")
def jobs_retry(
    job: JobArg,
    wait: Annotated[bool, typer.Option(help="Follow the new job to its end.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Retry a failed, cancelled or corrupted job as a new job over the same sources."""
    new = STATE.api.call("POST", f"{API}/ingestion/jobs/{job}/retry")
    if new["status"] == "PENDING":
        new = STATE.api.call("POST", f"{API}/ingestion/jobs/{new['id']}/start")
    if wait:
        finish(watch_job(STATE.api, new["id"], as_json=as_json), as_json)
    else:
        emit(new, as_json)


# Old names, kept working: ``datalake job ID`` and ``datalake cancel ID``.
@app.command("job", hidden=True)
def job_alias(job: JobArg, as_json: JsonOpt = False) -> None:
    """Show a job (old name of ``jobs show``)."""
    jobs_show(job, batches=False, as_json=as_json)


@app.command("cancel", hidden=True)
def cancel_alias(job: JobArg, as_json: JsonOpt = False) -> None:
    """Cancel a job (old name of ``jobs cancel``)."""
    jobs_cancel(job, as_json=as_json)


# ================================================================================ rejects
@app.command()
def rejects(
    job: JobArg,
    limit: Annotated[int, typer.Option(help="Show at most this many records.")] = 100,
    as_json: JsonOpt = False,
) -> None:
    """The records a job quarantined, with the reason each was rejected."""
    r = STATE.api.get(f"{API}/ingestion/jobs/{job}/rejects", limit=limit)
    gone = str(r.get("note") or f"the rejected records of job {job} are gone")
    shown = r["items"]
    title = f"{r['total']} rejected record(s) of job {job}" + (
        f", first {len(shown)}" if len(shown) < r["total"] else "")

    def render(d: dict[str, Any]) -> None:
        if d.get("gone"):
            return  # nothing to show: the one error line below says why
        out.print(list_table(d["items"], ["source", "row", "column", "value", "error"], title))
        if d.get("note"):  # some objects expired: say so beside what is left
            err.print(d["note"], markup=False, highlight=False, soft_wrap=True)

    emit(r, as_json, render)
    if r.get("gone"):
        raise CliError(gone)


# ================================================================================ schema
def _versions(api: ApiClient, table_id: str) -> list[dict[str, Any]]:
    return list(api.get(f"{API}/schema/versions/table/{table_id}", limit=1000)["items"])


def _schema_version(api: ApiClient, table_id: str, number: int) -> dict[str, Any]:
    for v in _versions(api, table_id):
        if v["version"] == number:
            return v
    raise CliError(f"the table has no schema version {number}")


def _fields_table(schema: dict[str, Any], title: str) -> Table:
    return list_table(schema.get("fields", []), ["id", "name", "type", "nullable"], title)


@schema_app.command("show")
def schema_show(
    table: TableArg,
    version: Annotated[int | None, typer.Option(help="This version (default: current).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Show a table's current (or given) schema version."""
    t = resolve_table(STATE.api, table)
    v = (_schema_version(STATE.api, t["id"], version) if version is not None
         else STATE.api.call("GET", f"{API}/schema/versions/table/{t['id']}/current"))
    emit(v, as_json, lambda d: out.print(_fields_table(d["schema"], f"version {d['version']}")))


@schema_app.command("history")
def schema_history(table: TableArg, as_json: JsonOpt = False) -> None:
    """List a table's schema versions and their changes."""
    t = resolve_table(STATE.api, table)
    items = _versions(STATE.api, t["id"])
    def summary(v: dict[str, Any]) -> dict[str, Any]:
        from collections import Counter

        kinds = Counter(str(c.get("type", "?")) for c in v.get("changes", []))
        return {**v, "created_at": str(v.get("created_at", ""))[:19].replace("T", " "),
                "changes": ", ".join(f"{n} {kind}" for kind, n in kinds.items())}

    emit({"items": items, "total": len(items)}, as_json, lambda d: out.print(list_table(
        [summary(v) for v in d["items"]],
        ["version", "source", "created_by", "created_at", "job_id", "changes"])))


@schema_app.command("diff")
def schema_diff(
    table: TableArg,
    old: Annotated[int, typer.Argument(help="The older version number.")],
    new: Annotated[
        int | None, typer.Argument(help="The newer version number (default: current).")
    ] = None,
    mode: Annotated[str | None, typer.Option(help="Judge against this compatibility mode.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Compare two schema versions of a table: the changes and their compatibility."""
    api = STATE.api
    t = resolve_table(api, table)
    a = _schema_version(api, t["id"], old)
    b = (_schema_version(api, t["id"], new) if new is not None
         else api.call("GET", f"{API}/schema/versions/table/{t['id']}/current"))
    body: dict[str, Any] = {"old": a["id"], "new": b["id"]}
    if mode:
        body["mode"] = mode
    result = api.call("POST", f"{API}/schema/compare", body)
    def render(r: dict[str, Any]) -> None:
        out.print(list_table(r["changes"], ["type", "column", "from", "to", "breaking"],
                             f"version {a['version']} -> {b['version']}"))
        out.print(kv_table(r.get("compatible", {}), "compatible"))

    emit(result, as_json, render)


@schema_app.command("apply")
def schema_apply(
    table: TableArg,
    version: Annotated[
        int, typer.Argument(help="The version to make current (an older one: a rollback).")
    ],
    as_json: JsonOpt = False,
) -> None:
    """Make a schema version current again (a rollback when it is an older one)."""
    t = resolve_table(STATE.api, table)
    v = _schema_version(STATE.api, t["id"], version)
    result = STATE.api.call("POST", f"{API}/schema/versions/{v['id']}/apply")
    emit(result, as_json, lambda d: out.print(
        f"table {t['namespace']}.{t['name']} is now at version {d['version']} "
        f"(the schema of version {version})"))


# ================================================================================ maintenance
#: ``optimize --wait``: seconds between reads of the run, and at most how long (the
#: optimize function's own limit is 15 minutes; Lambda may retry a failed run twice).
OPTIMIZE_POLL_S = 1.0
OPTIMIZE_WAIT_S = 3 * 15 * 60.0
#: What ``optimize --wait`` prints of the run.
OPTIMIZE_SHOWN = ("status", "files_before", "files_after", "files_replaced", "files_written",
                  "partitions_compacted", "rows", "swept", "error", "errors")
@app.command()
def optimize(
    table: TableArg,
    target_file_size_mb: Annotated[
        int | None, typer.Option(help="Target size of merged files (default: the table's).")
    ] = None,
    wait: Annotated[
        bool, typer.Option(help="Follow the run until it has finished, then summarise it.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Compact a table's small files (runs in the optimize function)."""
    api = STATE.api
    t = resolve_table(api, table)
    body = {"target_file_size_mb": target_file_size_mb} if target_file_size_mb else {}
    accepted = api.call("POST", f"{API}/partitions/table/{t['id']}/optimize", body)
    if not wait:
        emit(accepted, as_json)
        return
    path = f"{API}/partitions/table/{t['id']}/optimize/{accepted['run_id']}"
    deadline = time.monotonic() + OPTIMIZE_WAIT_S
    run = api.call("GET", path)
    while run["status"] == "ACCEPTED":
        if time.monotonic() > deadline:
            raise CliError(f"optimize run {accepted['run_id']} has not finished after "
                           f"{OPTIMIZE_WAIT_S:.0f}s (follow it with GET {path})")
        time.sleep(OPTIMIZE_POLL_S)
        run = api.call("GET", path)
    emit(run, as_json, lambda r: out.print(kv_table(
        {k: v for k, v in r.items() if k in OPTIMIZE_SHOWN}, f"optimize run {r['run_id']}")))
    if run["status"] not in ("DONE", "PARTIAL"):
        raise CliError(f"optimize run {run['run_id']} {run['status']}: "
                       f"{run.get('error') or run.get('errors') or 'no error given'}")


@app.command()
def verify(
    table: TableArg,
    page_size: Annotated[
        int, typer.Option(min=1, max=10_000, help="Files re-hashed per API call.")
    ] = 1000,
    as_json: JsonOpt = False,
) -> None:
    """Re-hash every committed file of a table against its checksum (one full pass,
    as many API calls as it takes); exit 1 if any file is missing, corrupt or unchecked."""
    from datetime import UTC, datetime
    from urllib.parse import urlencode

    t = resolve_table(STATE.api, table)
    path = f"{API}/tables/{t['id']}/verify"
    # The first call re-checks files verified before now; the rest pass its start, by
    # the catalog's clock, as `since`: every file verified before this pass is due,
    # none this pass verified is (whatever this machine's clock says).
    since = datetime.now(UTC).isoformat()
    total: dict[str, Any] = {"table_id": t["id"], "files_checked": 0, "ok": 0, "missing": [],
                             "corrupt": [], "errors": [], "jobs_marked": [], "calls": 0}
    while True:
        query = urlencode({"limit": page_size, "since": since})
        report = STATE.api.call("POST", f"{path}?{query}")
        if total["calls"] == 0 and report.get("checked_at"):
            since = report["checked_at"]
        total["calls"] += 1
        for key in ("files_checked", "ok"):
            total[key] += report.get(key) or 0
        for key in ("missing", "corrupt", "jobs_marked"):
            total[key] += report.get(key) or []
        total["errors"] = report.get("errors") or []  # unreadable files stay due: the last call's
        total["remaining"] = report.get("remaining") or 0
        settled = (report.get("ok") or 0) + len(report.get("missing") or []) + len(
            report.get("corrupt") or [])
        if not total["remaining"] or not settled:  # done, or only unreadable files left
            break
    if not as_json:
        err.print(f"{t['namespace']}.{t['name']}: {total['files_checked']} file(s) checked in "
                  f"{total['calls']} call(s)", highlight=False)
    emit(total, as_json)
    problems = [f"{len(total[k])} {k}" for k in ("corrupt", "missing") if total[k]]
    if total["remaining"]:
        problems.append(f"{total['remaining']} unchecked ({len(total['errors'])} unreadable)")
    if problems:
        raise CliError(f"table {t['namespace']}.{t['name']}: " + ", ".join(problems))


@app.command()
def query(
    sql: Annotated[str, typer.Argument(help="SQL naming tables as NAMESPACE.NAME.")],
    table: Annotated[
        list[str] | None,
        typer.Option(help="A table to expose (default: every NAMESPACE.NAME the SQL names)."),
    ] = None,
    as_of: Annotated[
        str | None,
        typer.Option(help="Read the tables as they were at this ISO 8601 time (UTC when it "
                          "has no zone): their Iceberg snapshot then."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Run SQL with DuckDB over tables' committed data, read by field id (as Iceberg)."""
    from datalake.cli.query import parse_instant, run_query

    at = parse_instant(as_of) if as_of is not None else None
    result = run_query(STATE.api, STATE.profile, sql, tables=table or [], as_of=at)
    emit(result, as_json, lambda r: out.print(list_table(
        [dict(zip(r["columns"], row, strict=True)) for row in r["rows"]], r["columns"],
        f"{len(r['rows'])} row(s)")))


# ================================================================================ admin
@app.command()
def token(
    role: Annotated[
        list[str] | None, typer.Option(help="reader, writer or admin (repeatable; default admin).")
    ] = None,
    subject: Annotated[str, typer.Option(help="Who the token speaks for.")] = "local-admin",
    ttl_days: Annotated[int, typer.Option(help="Lifetime in days.")] = 30,
    as_json: JsonOpt = False,
) -> None:
    """Print a signed API token (with DATALAKE_JWT_SECRET, else the development secret)."""
    from datalake.config import LOCAL_JWT_SECRET, get_settings
    from datalake.tokens import ROLE_RANK, make_token

    roles = role or ["admin"]
    unknown = sorted(set(roles) - set(ROLE_RANK))
    if unknown:
        raise CliError(f"unknown role(s) {', '.join(unknown)}; known: {', '.join(ROLE_RANK)}")
    if get_settings().jwt_secret == LOCAL_JWT_SECRET:
        note("note: DATALAKE_JWT_SECRET is not set: signed with the development secret, "
             "which only a local stack accepts")
    try:
        signed = make_token(subject, roles, ttl_seconds=ttl_days * 86400)
    except Exception as e:
        raise CliError(f"cannot sign a token: {e}") from e
    emit({"token": signed, "subject": subject, "roles": roles}, as_json,
         lambda d: sys.stdout.write(d["token"] + "\n"))


@app.command()
def migrate(
    database_url: Annotated[
        str | None, typer.Option(help="The catalog to migrate (default: DATABASE_URL).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Apply the catalog's migrations (Alembic) to an explicitly named database.

    Without --database-url or DATABASE_URL it migrates only the local stack's own
    catalog (the DATABASE_URL of .datalake/local.env), and says so.
    """
    from datalake.catalog.migrate import display_url, upgrade

    url = database_url or os.environ.get("DATABASE_URL")
    origin = "--database-url" if database_url else "DATABASE_URL"
    if not url:
        from datalake.cli.client import load_local_env

        url = load_local_env().get("DATABASE_URL")
        origin = "the local stack's catalog (.datalake/local.env)"
        if not url:
            raise CliError("no database to migrate: pass --database-url or set DATABASE_URL "
                           "(outside the local stack nothing is migrated by default)")
        note(f"migrating the local stack's own catalog: {display_url(url)}")
    try:
        upgrade(url)
    except Exception as e:
        raise CliError(f"migration of {display_url(url)} failed: {type(e).__name__}: {e}") from e
    emit({"migrated": display_url(url), "from": origin}, as_json,
         lambda d: out.print(f"catalog migrated: {d['migrated']}"))


# ================================================================================ running
def _hoist(argv: list[str]) -> list[str]:
    """Move the global options found after the command to the front of ``argv``."""
    front: list[str] = []
    rest: list[str] = []
    i = 0
    while i < len(argv):
        a = argv[i]
        if a == "--":
            rest.extend(argv[i:])
            break
        name = a.split("=", 1)[0]
        if name in GLOBAL_VALUED:
            if "=" in a:
                front.append(a)
            elif i + 1 < len(argv):
                front.extend([a, argv[i + 1]])
                i += 1
            else:
                rest.append(a)
        elif a in GLOBAL_FLAGS:
            front.append(a)
        else:
            rest.append(a)
        i += 1
    return front + rest


def run(argv: list[str] | None = None) -> int:
    """Run the CLI on ``argv``; return the exit status (never raises, never a traceback
    unless ``--debug``)."""
    args = _hoist(list(sys.argv[1:] if argv is None else argv))
    STATE.__init__()  # type: ignore[misc]  # a fresh state per run (tests call run twice)
    STATE.debug = "--debug" in args
    command = typer.main.get_command(app)
    try:
        command.main(args=args, prog_name="datalake", standalone_mode=False)
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except typer.Exit as e:
        return int(e.exit_code)
    except typer.Abort:
        return _report("aborted", 1)
    except CliError as e:
        return _report(str(e), e.exit_code)
    except typer.TyperException as e:
        show = getattr(e, "show", None)
        if type(e).__name__ == "NoArgsIsHelpError" and callable(show):
            show()  # a bare group: its help is what the user asked for
            return 0
        message = e.format_message()
        if e.exit_code == 2:  # bad usage: say where the help is
            message += f" (see: datalake {' '.join(_cmd_path(args))} --help)"
        return _report(message, e.exit_code)
    except KeyboardInterrupt:
        return _report("interrupted", 130)
    except Exception as e:  # a bug or an unexpected library error: still one line
        return _report(f"{type(e).__name__}: {e} (run with --debug for the traceback)", 1)
    return 0


def _report(message: str, code: int) -> int:
    """Write ``error: message`` as one line on stderr (the traceback first with --debug)."""
    if STATE.debug:
        traceback.print_exc()
    line = " ".join(message.split()) or "failed"
    sys.stderr.write(f"error: {line}\n")
    sys.stderr.flush()
    return code


def _cmd_path(args: list[str]) -> list[str]:
    words = [a for a in args if not a.startswith("-")]
    groups = {"tables", "sources", "jobs", "schema"}
    return words[:2] if words and words[0] in groups else words[:1]
