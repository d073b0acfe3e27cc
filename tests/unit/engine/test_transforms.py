"""Partition transforms: Iceberg's spec values and vectorised == scalar reference."""

from __future__ import annotations

import datetime as dt
import decimal

import numpy as np
import pyarrow as pa
import pytest

from datalake.domain.partitioning import (
    NULL_PARTITION,
    PartitionField,
    escape_path_value,
    human_string,
    parse_transform,
    partition_path,
    range_names,
)
from datalake.engine.transforms import (
    apply_transform,
    bucket,
    bucket_hashes,
    iceberg_hash,
    murmur3_long,
)

# Apache Iceberg spec, "Appendix B: 32-bit Hash Requirements"
SPEC = [
    ("int", pa.array([34], pa.int32()), 2017239379),
    ("long", pa.array([34], pa.int64()), 2017239379),
    ("decimal(4,2)", pa.array([decimal.Decimal("14.20")], pa.decimal128(4, 2)), -500754589),
    ("date", pa.array([dt.date(2017, 11, 16)], pa.date32()), -653330422),
    ("time", pa.array([dt.time(22, 31, 8)], pa.time64("us")), -662762989),
    ("timestamp", pa.array([dt.datetime(2017, 11, 16, 22, 31, 8)], pa.timestamp("us")),
     -2047944441),
    ("timestamptz", pa.array([dt.datetime(2017, 11, 16, 14, 31, 8, tzinfo=dt.timezone(
        dt.timedelta(hours=-8)))], pa.timestamp("us", tz="UTC")), -2047944441),
    ("string", pa.array(["iceberg"]), 1210000089),
    ("uuid", pa.array(["f79c3e09-677c-4bbd-a479-3f349cb785e7"]), 1488055340),
    ("binary", pa.array([b"\x00\x01\x02\x03"]), -188683207),
]


@pytest.mark.parametrize(("type_name", "arr", "expected"), SPEC, ids=[s[0] for s in SPEC])
def test_bucket_hash_matches_iceberg_spec(type_name, arr, expected):
    assert bucket_hashes(arr, type_name).to_pylist() == [expected]
    assert iceberg_hash(arr[0].as_py(), type_name) == expected


def test_bucket_value_is_masked_hash_mod_n():
    arr = pa.array([34, None, -1, 2**40], pa.int64())
    hashes = bucket_hashes(arr, "long").to_pylist()
    got = bucket(arr, "long", 16).to_pylist()
    assert got[1] is None
    for h, b in zip(hashes, got, strict=True):
        if h is not None:
            assert b == (h & 0x7FFFFFFF) % 16
    assert got[0] == 2017239379 % 16


def test_vectorised_murmur_equals_mmh3_reference():
    import mmh3

    rng = np.random.default_rng(7)
    vals = rng.integers(-(2**63), 2**63 - 1, size=2000, dtype=np.int64)
    got = murmur3_long(vals)
    for v, h in zip(vals[:300], got[:300], strict=True):
        assert mmh3.hash(int(v).to_bytes(8, "little", signed=True), 0, signed=True) == h


def test_decimal_hash_uses_minimal_twos_complement():
    for v in ["0", "-1.28", "1.28", "-0.01", "12345678901234567.89"]:
        d = decimal.Decimal(v)
        arr = pa.array([d], pa.decimal128(20, 2))
        assert bucket_hashes(arr, "decimal(20,2)").to_pylist() == [iceberg_hash(d, "decimal(20,2)")]
    # Java BigInteger(-128).toByteArray() == [0x80]
    import mmh3
    assert iceberg_hash(decimal.Decimal("-1.28"), "decimal(5,2)") == mmh3.hash(b"\x80", 0)


def test_temporal_transforms_and_human_strings():
    ts = pa.array([dt.datetime(2017, 11, 16, 22, 31, 8), dt.datetime(1969, 12, 31, 23, 59, 59),
                   None], pa.timestamp("us"))
    t = {k: parse_transform(k) for k in ("year", "month", "day", "hour")}
    assert apply_transform(ts, "timestamp", t["year"]).to_pylist() == [47, -1, None]
    assert apply_transform(ts, "timestamp", t["month"]).to_pylist() == [574, -1, None]
    assert apply_transform(ts, "timestamp", t["day"]).to_pylist() == [17486, -1, None]
    assert apply_transform(ts, "timestamp", t["hour"]).to_pylist() == [419686, -1, None]
    assert human_string(47, "timestamp", t["year"]) == "2017"
    assert human_string(574, "timestamp", t["month"]) == "2017-11"
    assert human_string(17486, "timestamp", t["day"]) == "2017-11-16"
    assert human_string(419686, "timestamp", t["hour"]) == "2017-11-16-22"
    assert human_string(-1, "timestamp", t["hour"]) == "1969-12-31-23"
    d = pa.array([dt.date(2017, 11, 16), dt.date(1969, 1, 1)], pa.date32())
    assert apply_transform(d, "date", t["day"]).to_pylist() == [17486, -365]
    assert apply_transform(d, "date", t["month"]).to_pylist() == [574, -12]


def test_truncate():
    tr = parse_transform("truncate[10]")
    assert apply_transform(pa.array([1, -1, 10, -10, None], pa.int64()), "long",
                           tr).to_pylist() == [0, -10, 10, -10, None]
    assert apply_transform(pa.array(["iceberg", "ié", None]), "string",
                           parse_transform("truncate[3]")).to_pylist() == ["ice", "ié", None]
    dec = pa.array([decimal.Decimal("10.65")], pa.decimal128(6, 2))
    assert apply_transform(dec, "decimal(6,2)", parse_transform("truncate[50]")).to_pylist() == [
        decimal.Decimal("10.50")]
    assert apply_transform(pa.array([b"abcdef"]), "binary",
                           parse_transform("truncate[2]")).to_pylist() == [b"ab"]


def test_range_transform_and_names():
    tr = parse_transform("range[0,100,1000]")
    arr = pa.array([-5, 0, 99, 100, 5000, None], pa.int64())
    assert apply_transform(arr, "long", tr).to_pylist() == [0, 1, 1, 2, 3, None]
    assert range_names(tr.bounds) == ["lt_0", "0_to_100", "100_to_1000", "ge_1000"]
    dates = pa.array([dt.date(2019, 5, 1), dt.date(2021, 1, 1)], pa.date32())
    tr2 = parse_transform("range[2020-01-01]")
    assert apply_transform(dates, "date", tr2).to_pylist() == [0, 1]
    assert human_string(1, "date", tr2) == "ge_2020-01-01"


def test_paths_escape_and_null_partition():
    fields = [PartitionField(column="a"), PartitionField(column="b", transform="bucket[4]")]
    assert partition_path(fields, ("x/y:z", None)) == f"a=x%2Fy%3Az/b_bucket={NULL_PARTITION}"
    assert escape_path_value("2017-11-16T22:31:08") == "2017-11-16T22%3A31%3A08"
