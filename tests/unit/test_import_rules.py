"""The shared library's layers import only what docs/architecture.md says they may.

Every import is read from the source (module level and the lazy ones inside functions;
only ``if TYPE_CHECKING:`` blocks are left out, they never run), so a rule is broken
the moment the line is written, not when a test happens to execute it.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LIB = ROOT / "layers" / "datalake"
PACKAGE = LIB / "datalake"
FUNCTIONS = ROOT / "functions"

#: Third-party packages the pure domain may use: validation, never I/O.
DOMAIN_THIRD_PARTY = {"pydantic"}
#: Shared modules of the library's top level every layer may import.
SHARED = {"datalake.errors"}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(LIB).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST, module: str) -> Iterator[str]:
    """Absolute names of everything ``tree`` imports, outside TYPE_CHECKING blocks."""
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _is_type_checking(node):
            stack.extend(node.orelse)
            continue
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this module's package
                base = module.split(".")[: -node.level] if node.level else []
                prefix = ".".join([*base, node.module] if node.module else base)
            else:
                prefix = node.module or ""
            if prefix == "__future__":
                continue
            yield prefix
            # `from datalake.engine import avro` imports the module datalake.engine.avro
            yield from (f"{prefix}.{alias.name}" for alias in node.names)
        stack.extend(ast.iter_child_nodes(node))


def _graph() -> dict[str, set[str]]:
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py") if "migrations" not in p.parts}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        found = _imports(ast.parse(path.read_text(), str(path)), name)
        graph[name] = {_resolve(n, modules) for n in found}
    return graph


def _resolve(name: str, modules: dict[str, Path]) -> str:
    """The module ``name`` lives in (``datalake.errors.InvalidInput`` -> ``datalake.errors``)."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        if ".".join(parts[:end]) in modules:
            return ".".join(parts[:end])
    return name


GRAPH = _graph()


def _internal(names: set[str]) -> set[str]:
    return {n for n in names if n in GRAPH}


def _layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _of_layer(layer: str) -> list[str]:
    return sorted(m for m in GRAPH if _layer(m) == layer)


@pytest.mark.parametrize("module", _of_layer("domain"))
def test_the_domain_imports_no_io_library_and_no_other_layer(module: str) -> None:
    bad = []
    for name in GRAPH[module]:
        top = name.split(".")[0]
        if top == "datalake":
            if _layer(name) != "domain" and name not in SHARED and name != "datalake":
                bad.append(name)
        elif top not in sys.stdlib_module_names and top not in DOMAIN_THIRD_PARTY:
            bad.append(name)
    assert not bad, f"{module} imports {sorted(bad)}"


@pytest.mark.parametrize("module", _of_layer("engine"))
def test_the_engine_imports_no_service_catalog_or_aws_module(module: str) -> None:
    bad = {n for n in GRAPH[module] if _layer(n) in ("services", "catalog", "aws", "cli")
           and n.startswith("datalake.")}
    assert not bad, f"{module} imports {sorted(bad)}"


@pytest.mark.parametrize("module", _of_layer("aws"))
def test_the_aws_adapters_import_no_service(module: str) -> None:
    bad = {n for n in GRAPH[module] if n.startswith("datalake.services")}
    assert not bad, f"{module} imports {sorted(bad)}"


def _python_files_outside_the_catalog() -> list[Path]:
    files = [p for p in PACKAGE.rglob("*.py") if "catalog" not in p.relative_to(PACKAGE).parts]
    return sorted(files + list(FUNCTIONS.rglob("*.py")))


def test_no_sqlalchemy_outside_the_catalog_package() -> None:
    bad = []
    for path in _python_files_outside_the_catalog():
        tree = ast.parse(path.read_text(), str(path))
        if any(n.split(".")[0] == "sqlalchemy" for n in _imports(tree, "")):
            bad.append(str(path.relative_to(ROOT)))
    assert not bad, f"SQLAlchemy is imported outside datalake.catalog by {bad}"


def _cycles() -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan)."""
    edges = {m: _internal(names) - {m} for m, names in GRAPH.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                out.append(sorted(group))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycle_in_the_shared_library() -> None:
    assert _cycles() == []


def test_the_rules_catch_what_they_guard() -> None:
    """The checks above find a violation when one is there (guards against a vacuous pass)."""
    tree = ast.parse("def f():\n    import pyarrow\n    from ..services import jobs\n")
    assert {"pyarrow", "datalake.services.jobs"} <= set(_imports(tree, "datalake.engine.x"))
    guarded = ast.parse("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import boto3\n")
    assert "boto3" not in set(_imports(guarded, "datalake.aws.x"))
    assert _of_layer("domain") and _of_layer("engine") and _of_layer("aws")


DOC = ROOT / "docs" / "architecture.md"
MARKER = "<!-- Generated from the code by tests/unit/test_import_rules.py"


def layer_arrows() -> dict[str, list[str]]:
    """Which layers (and top-level modules) each one imports, from the code."""
    arrows: dict[str, set[str]] = {}
    for module, names in GRAPH.items():
        source = _layer(module) or "datalake"
        for name in _internal(names):
            target = _layer(name) or "datalake"
            if target not in (source, "datalake"):
                arrows.setdefault(source, set()).add(target)
        arrows.setdefault(source, set())
    arrows.pop("datalake", None)
    return {k: sorted(v) for k, v in sorted(arrows.items())}


def arrows_table() -> str:
    rows = ["| layer or module | imports |", "|---|---|"]
    for source, targets in layer_arrows().items():
        rows.append(f"| `{source}` | {', '.join(f'`{t}`' for t in targets) or '—'} |")
    return "\n".join(rows)


def test_the_architecture_page_draws_the_arrows_as_they_are() -> None:
    text = DOC.read_text()
    assert MARKER in text, f"{DOC} lost its generated table"
    drawn = text.split(MARKER, 1)[1].split("-->", 1)[1].strip()
    assert drawn.startswith(arrows_table()), (
        "docs/architecture.md's arrows are stale; replace the table after its marker with:\n"
        + arrows_table()
    )
