"""Split conformed batches by partition (vectorised: dictionary codes + one sort)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from datalake.domain.partitioning import PartitionField, human_string, partition_path
from datalake.domain.schema import Schema
from datalake.domain.types import DecimalType, parse_type
from datalake.engine.transforms import apply_transform
from datalake.errors import InvalidInput

_TEMPORAL = {"date", "timestamp", "timestamptz"}
_RETAINED: list[pa.MemoryPool] = []


def retained_pool() -> pa.MemoryPool:
    """The memory pool for buffered (long-lived) partition data: the system allocator,
    which returns freed memory to the OS."""
    if not _RETAINED:
        _RETAINED.append(pa.system_memory_pool())
    return _RETAINED[0]


def validate_partitioning(fields: list[PartitionField], schema: Schema) -> None:
    """Raise InvalidInput when a partition field does not fit the schema."""
    for pf in fields:
        sf = schema.find(pf.column)
        if sf is None:
            raise InvalidInput(f"partition column {pf.column!r} is not in the table schema")
        t = parse_type(sf.type)
        kind = pf.parsed.kind
        if kind in ("year", "month", "day") and t not in _TEMPORAL:
            raise InvalidInput(f"{kind}({pf.column}) needs a date or timestamp column, not {t}")
        if kind == "hour" and t not in ("timestamp", "timestamptz"):
            raise InvalidInput(f"hour({pf.column}) needs a timestamp column, not {t}")
        if kind == "bucket" and (t in ("boolean", "float", "double")):
            raise InvalidInput(f"bucket[N] does not apply to {t} column {pf.column!r}")
        if kind == "truncate" and not (isinstance(t, DecimalType) or t in (
                "int", "long", "string", "binary")):
            raise InvalidInput(f"truncate[W] does not apply to {t} column {pf.column!r}")


class Partitioner:
    def __init__(self, fields: list[PartitionField], schema: Schema) -> None:
        validate_partitioning(fields, schema)
        self.fields = list(fields)
        names = [f.name.lower() for f in schema.fields]
        self.cols = [names.index(pf.column.lower()) for pf in self.fields]
        self.types = [schema.fields[i].type for i in self.cols]
        self.transforms = [pf.parsed for pf in self.fields]
        self._human: list[dict[Any, str | None]] = [{} for _ in self.fields]

    def _human_of(self, i: int, value: Any) -> str | None:
        cache = self._human[i]
        try:
            return cache[value]
        except KeyError:
            s = human_string(value, self.types[i], self.transforms[i])
            cache[value] = s
            return s
        except TypeError:  # unhashable
            return human_string(value, self.types[i], self.transforms[i])

    def split(self, batch: pa.RecordBatch
              ) -> list[tuple[str, dict[str, str | None], pa.RecordBatch, pa.RecordBatch | None]]:
        """``[(path, values, rows, parent)]``: one entry per partition present.

        ``rows`` may be a slice of ``parent`` (a sorted copy of the batch).
        """
        n = batch.num_rows
        if not self.fields:
            return [("", {}, batch, None)] if n else []
        if n == 0:
            return []
        codes: np.ndarray | None = None
        dicts: list[list[Any]] = []
        sizes: list[int] = []
        for i, col in enumerate(self.cols):
            tv = apply_transform(batch.column(col), self.types[i], self.transforms[i])
            enc = pc.dictionary_encode(tv, null_encoding="encode")
            d = enc.dictionary.to_pylist()
            c = enc.indices.to_numpy(zero_copy_only=False).astype(np.int64)
            dicts.append(d)
            sizes.append(len(d))
            codes = c if codes is None else codes * len(d) + c
        assert codes is not None

        def values_of(code: int) -> tuple[str | None, ...]:
            out = []
            for i in range(len(self.fields) - 1, -1, -1):
                code, k = divmod(code, sizes[i])
                out.append(self._human_of(i, dicts[i][k]))
            return tuple(reversed(out))

        def entry(code: int, rows: pa.RecordBatch, parent: pa.RecordBatch | None
                  ) -> tuple[str, dict[str, str | None], pa.RecordBatch, pa.RecordBatch | None]:
            vals = values_of(code)
            path = partition_path(self.fields, vals)
            return path, {pf.path_name: v for pf, v in zip(self.fields, vals, strict=True)}, \
                rows, parent

        lo, hi = int(codes.min()), int(codes.max())
        if lo == hi:
            return [entry(lo, batch, None)]
        order = np.argsort(codes, kind="stable")
        sc = codes[order]
        bounds = np.flatnonzero(sc[1:] != sc[:-1]) + 1
        starts = np.concatenate(([0], bounds))
        ends = np.concatenate((bounds, [n]))
        # The sorted copy lives until its partitions are written: allocate it from its
        # own pool so it does not fragment the pool the readers churn through.
        taken = pc.take(batch, pa.array(order), memory_pool=retained_pool())
        # Merge groups that map to the same path (distinct transform values can share a
        # human string only in pathological cases; keep them separate otherwise).
        return [entry(int(sc[s]), taken.slice(int(s), int(e - s)), taken)
                for s, e in zip(starts, ends, strict=True)]
