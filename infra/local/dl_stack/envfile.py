"""``.datalake/local.env``: the AWS settings, the stack's outputs as ``DATALAKE_*``
variables, where readers find the Iceberg tables, and the caller's extras (kept across
rewrites until overridden). ``export KEY=value`` lines, shell-quoted."""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Mapping
from pathlib import Path

from dl_stack.deploy import stack_outputs
from dl_stack.report import StackError
from dl_stack.settings import DEFAULT_STACK, ENDPOINT, ENV_FILE, REGION
from dl_stack.template import upper_snake

# Outputs whose env name is not simply DATALAKE_<UPPER_SNAKE>
OUTPUT_ENV_NAMES = {
    "ApiUrl": "DATALAKE_API_URL",
    "LandingBucket": "DATALAKE_LANDING_BUCKET",
    "LakeBucket": "DATALAKE_LAKE_BUCKET",
}
BASE_ENV = {
    "AWS_ENDPOINT_URL": ENDPOINT,
    "AWS_DEFAULT_REGION": REGION,
    "AWS_ACCESS_KEY_ID": "test",
    "AWS_SECRET_ACCESS_KEY": "test",
}


def output_env(outputs: Mapping[str, str]) -> dict[str, str]:
    """The environment names of the stack's outputs (``ApiUrl`` -> ``DATALAKE_API_URL``)."""
    return {OUTPUT_ENV_NAMES.get(k) or f"DATALAKE_{upper_snake(k)}": v for k, v in outputs.items()}


_EXTRA_MARK = "# set by the caller"


def read_local_env(path: str | os.PathLike[str] | None = None) -> dict[str, str]:
    """Parse ``local.env`` (``export KEY=value`` lines, shell-quoted)."""
    p = Path(path or ENV_FILE)
    return _parse(p.read_text()) if p.exists() else {}


def _parse(text: str) -> dict[str, str]:
    env: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        line = line.removeprefix("export ").strip()
        key, _, value = line.partition("=")
        parts = shlex.split(value) if value else [""]
        env[key.strip()] = parts[0] if parts else ""
    return env


def _read_extras(p: Path) -> dict[str, str]:
    """The entries below the caller's mark of an earlier file."""
    if not p.exists():
        return {}
    text = p.read_text()
    if _EXTRA_MARK not in text:
        return {}
    return _parse(text.split(_EXTRA_MARK, 1)[1])


def iceberg_env(env: Mapping[str, str]) -> dict[str, str]:
    """Where readers find the Iceberg tables: the SQL catalog (the catalog database, as a
    SQLAlchemy URL) and the API's Iceberg REST catalog."""
    out: dict[str, str] = {}
    url = env.get("DATABASE_URL")
    if url:
        for prefix in ("postgres://", "postgresql://"):
            if url.startswith(prefix):
                url = "postgresql+pg8000://" + url[len(prefix) :]
        out["DATALAKE_ICEBERG_CATALOG_URI"] = url
    if env.get("DATALAKE_API_URL"):
        out["DATALAKE_ICEBERG_REST_URL"] = env["DATALAKE_API_URL"].rstrip("/") + "/api/v1/iceberg"
    return out


def write_local_env(
    extra: Mapping[str, str] | None = None,
    stack_name: str = DEFAULT_STACK,
    path: str | os.PathLike[str] | None = None,
    outputs: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Write ``.datalake/local.env``: AWS settings, stack outputs, and caller-set extras.

    Extras given earlier are kept until overridden (``up`` rewrites the file).
    """
    p = Path(path or ENV_FILE)
    if outputs is None:
        try:
            outputs = stack_outputs(stack_name)
        except StackError:
            outputs = {}
    managed = {**BASE_ENV, **output_env(outputs)}
    extras = {
        k: v
        for k, v in {**_read_extras(p), **(extra or {})}.items()
        if k not in managed or (extra and k in extra)
    }
    for k in extras:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", k):
            raise StackError(f"not an environment variable name: {k!r}")
    managed.update(iceberg_env({**managed, **extras}))
    lines = [
        f"# written by infra/local/stack.py for stack {stack_name}; "
        "`source` it or load it with python-dotenv",
        "# from the local stack",
    ]
    lines += [f"export {k}={shlex.quote(v)}" for k, v in managed.items() if k not in extras]
    lines.append(_EXTRA_MARK)
    lines += [f"export {k}={shlex.quote(str(v))}" for k, v in extras.items()]
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_suffix(".tmp")
    tmp.write_text("\n".join(lines) + "\n")
    tmp.replace(p)
    return {**managed, **extras}

