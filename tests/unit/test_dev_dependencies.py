"""No module of the shared library imports a development-only dependency
(``[project.optional-dependencies] dev``), except the CLI, lazily, inside the function
that needs it: the layer is shipped without them. Read from the source, lazy imports
included, so the rule breaks when the line is written, not when a test runs it.
"""

from __future__ import annotations

import ast
import tomllib
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LIB = ROOT / "layers" / "datalake"
#: Distribution names of the dev extra whose import name differs, or that are no module.
IMPORT_NAMES = {"pyyaml": "yaml", "boto3-stubs": None}


def _modules() -> dict[str, Path]:
    out = {}
    for path in (LIB / "datalake").rglob("*.py"):
        if "migrations" in path.parts:
            continue
        name = ".".join(path.relative_to(LIB).with_suffix("").parts).removesuffix(".__init__")
        out[name] = path
    return out


MODULES = _modules()


def _imports(name: str) -> Iterator[tuple[str, bool]]:
    """(imported module, whether the import is at module level) of one module."""
    path = MODULES[name]
    tree = ast.parse(path.read_text())
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    top = {id(n) for n in tree.body}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, id(node) in top
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            for alias in node.names:
                full = f"{base}.{alias.name}"
                yield (full if full in MODULES else base), id(node) in top


def _dev_only() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    runtime = {_dist(d) for d in project["dependencies"]}
    names = set()
    for req in project["optional-dependencies"]["dev"]:
        dist = _dist(req)
        if dist in runtime or dist.startswith("duckdb-extension"):
            continue
        name = IMPORT_NAMES.get(dist, dist.replace("-", "_"))
        if name:
            names.add(name)
    return names


def _dist(req: str) -> str:
    for stop in "[<>=!~ ;":
        req = req.split(stop, 1)[0]
    return req.strip().lower()


def test_no_library_module_imports_a_development_dependency() -> None:
    dev = _dev_only()
    assert {"duckdb", "pytest", "moto"} <= dev
    offenders = set()
    for m in MODULES:
        for d, at_top in _imports(m):
            if d.split(".")[0] in dev and (at_top or not m.startswith("datalake.cli.")):
                offenders.add((m, d))
    assert not offenders
