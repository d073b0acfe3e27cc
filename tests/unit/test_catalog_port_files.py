"""SqlCatalog answers every question of the file side of the catalog port."""

from __future__ import annotations

import inspect

from datalake.catalog.sql_catalog import SqlCatalog
from datalake.ports import FileCatalog


def _methods(cls: type) -> dict[str, inspect.Signature]:
    return {
        name: inspect.signature(member)
        for name, member in inspect.getmembers(cls, inspect.isfunction)
        if not name.startswith("_")
    }


def test_sql_catalog_implements_the_file_catalog_with_the_same_signatures() -> None:
    port = _methods(FileCatalog)
    impl = _methods(SqlCatalog)
    assert len(port) > 30
    missing = sorted(set(port) - set(impl))
    assert missing == []
    differ = {
        name: (str(port[name]), str(impl[name]))
        for name in port
        if list(port[name].parameters) != list(impl[name].parameters)
    }
    assert differ == {}
