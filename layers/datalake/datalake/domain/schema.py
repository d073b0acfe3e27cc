"""The table schema model: fields with stable ids, as in Apache Iceberg (pure Python)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from datalake.domain.types import canonical_type
from datalake.errors import InvalidInput, describe_validation_error


class SchemaField(BaseModel):
    """One column of a table.

    ``id`` is stable for the life of the column: renames keep it, and a dropped column's
    id is never reused, so old data files are never reinterpreted.
    """

    model_config = ConfigDict(frozen=True)

    #: Iceberg field ids are 32-bit signed integers.
    id: int = Field(ge=1, le=2**31 - 1, strict=True)
    name: str = Field(min_length=1, max_length=255)
    type: str = Field(max_length=64)
    nullable: bool = True
    doc: str | None = Field(default=None, max_length=4096)

    @field_validator("type")
    @classmethod
    def _canonical(cls, value: str) -> str:
        try:
            return canonical_type(value)
        except InvalidInput as e:
            raise ValueError(e.message) from e


class Schema(BaseModel):
    """An ordered list of fields with unique names and ids."""

    model_config = ConfigDict(frozen=True)

    fields: tuple[SchemaField, ...] = ()

    @model_validator(mode="after")
    def _unique(self) -> Schema:
        names = [f.name.lower() for f in self.fields]
        if len(set(names)) != len(names):
            raise ValueError("column names must be unique (case-insensitive)")
        ids = [f.id for f in self.fields]
        if len(set(ids)) != len(ids):
            raise ValueError("field ids must be unique")
        return self

    def __iter__(self) -> Iterator[SchemaField]:  # type: ignore[override]
        return iter(self.fields)

    def __len__(self) -> int:
        return len(self.fields)

    @property
    def names(self) -> list[str]:
        """Column names, in order."""
        return [f.name for f in self.fields]

    @property
    def max_id(self) -> int:
        """The highest field id in use (0 for an empty schema)."""
        return max((f.id for f in self.fields), default=0)

    def field(self, name: str) -> SchemaField:
        """Return the field called ``name`` (case-insensitive).

        Raises
        ------
        KeyError
            When there is no such column.
        """
        lowered = name.lower()
        for f in self.fields:
            if f.name.lower() == lowered:
                return f
        raise KeyError(name)

    def find(self, name: str) -> SchemaField | None:
        """Return the field called ``name`` or ``None``."""
        try:
            return self.field(name)
        except KeyError:
            return None

    def by_id(self, field_id: int) -> SchemaField | None:
        """Return the field with this id, or ``None``."""
        return next((f for f in self.fields if f.id == field_id), None)

    def to_json(self) -> dict[str, Any]:
        """The JSON form stored in the catalog and returned by the API."""
        return {"fields": [f.model_dump(exclude_none=True) for f in self.fields]}

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> Schema:
        """Parse the JSON form; fields without ids are numbered after the highest id.

        Raises
        ------
        InvalidInput
            When a field or type is malformed.
        """
        if data is None:
            return cls()
        raw = data.get("fields") if isinstance(data, dict) else None
        if not isinstance(raw, list):
            raise InvalidInput("schema must be an object with a 'fields' list")
        # Only well-formed ids count here; a malformed one is reported by validation below.
        next_id = max(
            (f["id"] for f in raw if isinstance(f, dict) and _is_id(f.get("id"))), default=0
        )
        fields = []
        for item in raw:
            if not isinstance(item, dict):
                raise InvalidInput("each schema field must be an object")
            item = dict(item)
            if item.get("id") is None or item.get("id") == 0:  # 0: "assign one"
                next_id += 1
                item["id"] = next_id
            fields.append(item)
        try:
            return cls.model_validate({"fields": fields})
        except ValueError as e:
            raise InvalidInput(f"invalid schema: {describe_validation_error(e)}") from e

    @classmethod
    def of(cls, columns: Iterable[tuple[str, str] | tuple[str, str, bool]]) -> Schema:
        """Build a schema from ``(name, type[, nullable])`` tuples, numbering ids from 1."""
        fields = []
        for i, col in enumerate(columns, start=1):
            name, typ = col[0], col[1]
            nullable = bool(col[2]) if len(col) > 2 else True
            fields.append(SchemaField(id=i, name=name, type=typ, nullable=nullable))
        return cls(fields=tuple(fields))


def _is_id(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 1 <= value < 2**31
