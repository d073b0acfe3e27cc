"""The catalog's partition paths and the engine's object paths are the same string."""

from __future__ import annotations

from datalake.domain.partitioning import PartitionField, hive_path
from datalake.domain.partitioning import partition_path as engine_path
from datalake.services.jobs import partition_path as catalog_path


def test_catalog_and_engine_agree_on_paths_including_nulls_and_escapes() -> None:
    fields = [PartitionField(column="a"), PartitionField(column="b", name="b_day")]
    for values in [("x", "2024-01-01"), (None, "2024-01-01"), ("a/b=c", None), ("", "d")]:
        as_dict = {f.path_name: v for f, v in zip(fields, values, strict=True)}
        assert catalog_path(as_dict) == engine_path(fields, values) == hive_path(as_dict)
    assert catalog_path({"a": None}) == "a=__HIVE_DEFAULT_PARTITION__"
    assert catalog_path({}) == ""
