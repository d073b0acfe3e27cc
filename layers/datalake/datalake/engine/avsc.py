"""Avro schema documents checked by fastavro, the reference Avro implementation."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import fastavro

from datalake.errors import InvalidInput

__all__ = ["validate"]


def validate(avsc: Mapping[str, Any] | str) -> dict[str, Any]:
    """Check an Avro schema with ``fastavro.parse_schema``.

    Parameters
    ----------
    avsc:
        The ``.avsc`` JSON object, or its text.

    Returns
    -------
    dict
        fastavro's parsed schema.

    Raises
    ------
    InvalidInput
        When fastavro refuses the schema.
    """
    data = json.loads(avsc) if isinstance(avsc, str) else dict(avsc)
    try:
        parsed = fastavro.parse_schema(data)
    except Exception as e:  # fastavro raises several exception types
        raise InvalidInput(f"invalid Avro schema: {e}") from e
    if not isinstance(parsed, dict):
        raise InvalidInput("an Avro schema for a table must be a record")
    return parsed
