"""local.env names where readers find the Iceberg tables (infra/local/stack.py)."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "infra" / "local"))

import stack  # noqa: E402


def test_local_env_has_the_iceberg_catalog_uri_and_rest_url(tmp_path: Path) -> None:
    outputs = {"ApiUrl": "http://127.0.0.1:4566/_aws/execute-api/abc/prod"}
    env = stack.write_local_env({"DATABASE_URL": "postgresql://u@h:5432/db"}, "s",
                                path=tmp_path / "local.env", outputs=outputs)
    assert env["DATALAKE_ICEBERG_CATALOG_URI"] == "postgresql+pg8000://u@h:5432/db"
    assert env["DATALAKE_ICEBERG_REST_URL"] == (
        "http://127.0.0.1:4566/_aws/execute-api/abc/prod/api/v1/iceberg"
    )
    again = stack.read_local_env(tmp_path / "local.env")
    assert again["DATALAKE_ICEBERG_REST_URL"] == env["DATALAKE_ICEBERG_REST_URL"]
    sqlite = stack.write_local_env({"DATABASE_URL": "sqlite:////x/catalog.db"}, "s",
                                   path=tmp_path / "l2.env", outputs=outputs)
    assert sqlite["DATALAKE_ICEBERG_CATALOG_URI"] == "sqlite:////x/catalog.db"
