"""A table's output format and a job's ingest options, each default written once (pure).

:class:`TableFormat` is a table's ``format`` (the Parquet its files are written as);
:class:`IngestOptions` is a job's or a source's ``options`` (how its objects are read).
Both are frozen values: they are parsed where a request arrives (:meth:`TableFormat.parse`,
:meth:`IngestOptions.parse`, which raise :class:`~datalake.errors.InvalidInput`) and read
back from the catalog's JSON where work is done (:meth:`TableFormat.of`,
:meth:`IngestOptions.of`). Keys they do not model (CSV dialect options, ...) are kept as
given, so the stored JSON is what the caller sent plus the filled-in defaults.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, StrictFloat, StrictInt, ValidationError, field_validator

from datalake.domain.vocabulary import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_COMPRESSION,
    DEFAULT_SPLIT_SIZE_MB,
    DEFAULT_TARGET_FILE_SIZE_MB,
    Compression,
)
from datalake.errors import InvalidInput

__all__ = [
    "MAX_BATCH_SIZE",
    "MAX_SPLIT_SIZE_MB",
    "MAX_TARGET_FILE_SIZE_MB",
    "MAX_UPLOAD_CONCURRENCY",
    "MIN_TARGET_FILE_SIZE_MB",
    "IngestOptions",
    "TableFormat",
    "check_target_file_size_mb",
]

#: A table's ``target_file_size_mb`` range.
MIN_TARGET_FILE_SIZE_MB = 1
MAX_TARGET_FILE_SIZE_MB = 2048
#: Upper bounds of a job's options.
MAX_BATCH_SIZE = 5_000_000
MAX_SPLIT_SIZE_MB = 10_240
MAX_UPLOAD_CONCURRENCY = 64

_MB = 2**20


def check_target_file_size_mb(value: Any) -> int | float:
    """``value`` when it is a target file size in MB a table may have (1 to 2048).

    Raises
    ------
    InvalidInput
        For anything else (booleans included).
    """
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not MIN_TARGET_FILE_SIZE_MB <= value <= MAX_TARGET_FILE_SIZE_MB
    ):
        raise InvalidInput(
            f"target_file_size_mb must be a number between {MIN_TARGET_FILE_SIZE_MB} "
            f"and {MAX_TARGET_FILE_SIZE_MB}"
        )
    return value


def _first_message(error: ValidationError) -> str:
    """The message a validator raised (pydantic prefixes it), for :class:`InvalidInput`."""
    return str(error.errors()[0].get("msg", error)).removeprefix("Value error, ")


def _validated[M: BaseModel](model: type[M], values: dict[str, Any]) -> M:
    """``model`` of ``values``; the first validator's message as :class:`InvalidInput`."""
    try:
        return model.model_validate(values)
    except ValidationError as e:
        raise InvalidInput(_first_message(e)) from None


class TableFormat(BaseModel):
    """The Parquet a table's files are written as.

    Attributes
    ----------
    compression:
        The codec (:class:`~datalake.domain.vocabulary.Compression`, any case on input).
    target_file_size_mb:
        The size files are written and compacted towards, 1 to 2048.
    """

    model_config = ConfigDict(frozen=True, extra="allow")

    compression: Compression = DEFAULT_COMPRESSION
    target_file_size_mb: StrictInt | StrictFloat = DEFAULT_TARGET_FILE_SIZE_MB

    @field_validator("compression", mode="before")
    @classmethod
    def _codec(cls, value: Any) -> Compression:
        try:
            return Compression.parse(value)
        except InvalidInput as e:
            raise ValueError(e.message) from None

    @field_validator("target_file_size_mb", mode="before")
    @classmethod
    def _size(cls, value: Any) -> Any:
        try:
            return check_target_file_size_mb(value)
        except InvalidInput as e:
            raise ValueError(e.message) from None

    @classmethod
    def parse(cls, data: Mapping[str, Any] | None) -> Self:
        """Validate a table's ``format`` as a caller sent it (``None``: every default).

        Raises
        ------
        InvalidInput
            For an unknown codec or a target size outside 1 to 2048 MB.
        """
        if data is not None and not isinstance(data, Mapping):
            raise InvalidInput("format must be an object")
        return _validated(cls, dict(data or {}))

    @classmethod
    def of(cls, stored: Mapping[str, Any] | None) -> Self:
        """A table's format as the catalog holds it (validated when it was written)."""
        return cls.parse(stored)

    @property
    def target_file_size_bytes(self) -> int:
        """:attr:`target_file_size_mb` in bytes."""
        return int(float(self.target_file_size_mb) * _MB)

    def to_json(self) -> dict[str, Any]:
        """The catalog's JSON: the given keys, the codec normalised, the defaults filled in."""
        return self.model_dump(mode="json")


class IngestOptions(BaseModel):
    """How a job reads its objects (a source's options become its jobs' options).

    Attributes
    ----------
    batch_size:
        Records per streaming chunk inside a worker, 1 to 5,000,000.
    split_size_mb:
        The size of one source slice a batch reads, in (0, 10240].
    delimiter:
        The CSV delimiter, one character (``None``: the reader's default).
    upload_concurrency:
        Parts uploaded at once by a worker, 1 to 64 (``None``: the writer's default).
    """

    model_config = ConfigDict(frozen=True, extra="allow")

    batch_size: StrictInt = DEFAULT_BATCH_SIZE
    split_size_mb: StrictInt | StrictFloat = DEFAULT_SPLIT_SIZE_MB
    delimiter: str | None = None
    upload_concurrency: StrictInt | None = None

    @field_validator("batch_size", mode="before")
    @classmethod
    def _batch(cls, value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, int) or not (
            1 <= value <= MAX_BATCH_SIZE
        ):
            raise ValueError(
                f"options.batch_size must be an integer between 1 and {MAX_BATCH_SIZE}"
            )
        return value

    @field_validator("split_size_mb", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, int | float) or not (
            0 < value <= MAX_SPLIT_SIZE_MB
        ):
            raise ValueError(f"options.split_size_mb must be a number in (0, {MAX_SPLIT_SIZE_MB}]")
        return value

    @field_validator("delimiter", mode="before")
    @classmethod
    def _delimiter(cls, value: Any) -> Any:
        if value is not None and (not isinstance(value, str) or len(value) != 1):
            raise ValueError("options.delimiter must be a single character")
        return value

    @field_validator("upload_concurrency", mode="before")
    @classmethod
    def _uploads(cls, value: Any) -> Any:
        if value is not None and (
            isinstance(value, bool)
            or not isinstance(value, int)
            or not 1 <= value <= MAX_UPLOAD_CONCURRENCY
        ):
            raise ValueError(
                f"options.upload_concurrency must be an integer between 1 and "
                f"{MAX_UPLOAD_CONCURRENCY}"
            )
        return value

    @classmethod
    def parse(
        cls,
        data: Mapping[str, Any] | None,
        *,
        batch_size: int = DEFAULT_BATCH_SIZE,
        split_size_mb: float = DEFAULT_SPLIT_SIZE_MB,
    ) -> Self:
        """Validate a job's or source's ``options`` as a caller sent them.

        Parameters
        ----------
        data:
            The options (``None``: every default).
        batch_size, split_size_mb:
            The defaults for options ``data`` does not name (the deployment's settings).

        Raises
        ------
        InvalidInput
            For an option outside its range.
        """
        if data is not None and not isinstance(data, Mapping):
            raise InvalidInput("options must be an object")
        values = {"batch_size": batch_size, "split_size_mb": split_size_mb, **(data or {})}
        return _validated(cls, values)

    @classmethod
    def of(cls, stored: Mapping[str, Any] | None) -> Self:
        """A job's options as the catalog holds them (validated when the job was created)."""
        return cls.parse(stored)

    @property
    def split_size_bytes(self) -> int:
        """:attr:`split_size_mb` in bytes."""
        return int(float(self.split_size_mb) * _MB)

    def to_json(self) -> dict[str, Any]:
        """The catalog's JSON: the given options with ``batch_size`` and ``split_size_mb``
        filled in (``delimiter`` and ``upload_concurrency`` only when given)."""
        return self.model_dump(mode="json", exclude_unset=True) | {
            "batch_size": self.batch_size,
            "split_size_mb": self.split_size_mb,
        }
