"""`sam build` of infra/template.yaml offline, and what Lambda would say about its output.

The build is cached under .datalake/sam-build/<input hash> (infra/local/sam_build.py), so
this costs about 12 s after a change to the template, the functions or the layers, and
nothing otherwise.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
LOCAL = ROOT / "infra" / "local"
#: Imports the API function must never need (cold starts; the API layer does not ship them).
HEAVY = ("pyarrow", "numpy", "fastavro")


@pytest.fixture(scope="module")
def tools() -> Iterator[tuple[Any, Any]]:
    sys.path.insert(0, str(LOCAL))
    try:
        import sam_build
        import stack

        yield sam_build, stack
    finally:
        sys.path.remove(str(LOCAL))


@pytest.fixture(scope="module")
def build(tools: tuple[Any, Any]) -> Path:
    sam_build, _ = tools
    return Path(sam_build.build())


def test_every_function_with_its_layers_fits_lambdas_unzipped_limit(
    tools: tuple[Any, Any], build: Path
) -> None:
    sam_build, _ = tools
    sizes = sam_build.function_sizes(build)
    assert {f.name for f in sizes} >= {"ApiFunction", "IngestBatchFunction", "PlanFunction"}
    over = []
    for f in sizes:
        layers = ", ".join(f"{k} {v:,}" for k, v in f.layers.items())
        print(f"{f.name}: {f.total:,} bytes unzipped (code {f.code_bytes:,}; {layers})")
        if f.total > sam_build.LAMBDA_UNZIPPED_LIMIT:
            over.append(f"{f.name} {f.total:,}")
    assert not over, f"over Lambda's {sam_build.LAMBDA_UNZIPPED_LIMIT:,}-byte limit: {over}"


def test_the_api_function_ships_no_pyarrow_numpy_or_fastavro(
    tools: tuple[Any, Any], build: Path
) -> None:
    sam_build, _ = tools
    api = next(f for f in sam_build.function_sizes(build) if f.name == "ApiFunction")
    for d in [api.code, *api.layer_dirs.values()]:
        found = [n for n in HEAVY if (d / "python" / n).exists() or (d / n).exists()]
        assert not found, f"{d.name} ships {found}"


def test_the_engine_layer_is_trimmed(tools: tuple[Any, Any], build: Path) -> None:
    sam_build, _ = tools
    worker = next(f for f in sam_build.function_sizes(build) if f.name == "IngestBatchFunction")
    pyarrow = worker.layer_dirs["EngineDepsLayer"] / "python" / "pyarrow"
    assert (pyarrow / "libarrow.so.2600").exists() or list(pyarrow.glob("libarrow.so.*"))
    left = [
        p.name
        for pattern in ("libarrow_flight.so*", "_flight.*.so", "include", "tests", "*.pyx")
        for p in pyarrow.glob(pattern)
    ]
    assert not left, left


def test_every_layer_ships_the_bytecode_lambda_would_compile_on_each_cold_start(
    tools: tuple[Any, Any], build: Path
) -> None:
    """/opt is read-only on Lambda: a module without shipped bytecode is compiled again by
    every cold start (the API's import took 2.5-3.3 s so, against 1.0-1.2 s)."""
    sam_build, stack = tools
    python = str(stack.ensure_lambda_runtime())
    magic = subprocess.run(
        [python, "-c", "import importlib.util; print(importlib.util.MAGIC_NUMBER.hex())"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()
    layers: dict[str, Path] = {}
    for f in sam_build.function_sizes(build):
        layers.update(f.layer_dirs)
    assert {"DatalakeLayer", "ApiDepsLayer", "EngineDepsLayer"} <= set(layers)
    for name, layer in layers.items():
        sources = [
            p for p in (layer / "python").rglob("*.py") if "__pycache__" not in p.parts
        ]
        missing = []
        for src in sources:
            cached = src.parent / "__pycache__" / f"{src.stem}.cpython-313.pyc"
            if not cached.exists():
                missing.append(src)
                continue
            head = cached.read_bytes()[:8]
            # magic, then flags: bit 0 = hash-based, bit 1 = check source (off: unchecked)
            assert head[:4].hex() == magic and int.from_bytes(head[4:8], "little") == 1, cached
        # A few files are not Python 3 (vendored examples, templates named .py) and are
        # never imported; everything a function loads compiles.
        assert len(missing) <= max(5, len(sources) // 200), (name, missing[:10])
        for module in ("datalake/__init__.py", "fastapi/applications.py", "pyarrow/__init__.py"):
            if (layer / "python" / module).exists():
                assert (layer / "python" / module) not in missing, (name, module)


def test_every_built_function_imports_with_only_its_layers(
    tools: tuple[Any, Any], build: Path, tmp_path: Path
) -> None:
    """As Lambda runs it: the runtime's interpreter (boto3 only), the function's code, then
    its layers' python/ folders; the API must not load pyarrow, numpy or fastavro."""
    sam_build, stack = tools
    python = str(stack.ensure_lambda_runtime())
    probe = (
        "import sys, app\n"
        "assert callable(app.lambda_handler)\n"
        "print(' '.join(sorted({m.split('.')[0] for m in sys.modules})))\n"
    )
    failures = []
    for f in sam_build.function_sizes(build):
        env = {
            "PATH": "/usr/bin:/bin",
            "PYTHONPATH": os.pathsep.join(
                [str(f.code), *(str(d / "python") for d in reversed(f.layer_dirs.values()))]
            ),
            "DATALAKE_HOME": str(tmp_path),
            "AWS_DEFAULT_REGION": "us-east-1",
            "POWERTOOLS_SERVICE_NAME": "datalake",
            # The build output is what gets deployed and measured: write nothing into it.
            "PYTHONDONTWRITEBYTECODE": "1",
        }
        proc = subprocess.run(
            [python, "-c", probe], capture_output=True, text=True, env=env, cwd=f.code
        )
        if proc.returncode != 0:
            failures.append(f"{f.name}: {proc.stderr.strip().splitlines()[-1:]}")
            continue
        if f.name == "ApiFunction":
            loaded = set(proc.stdout.split())
            assert not loaded & set(HEAVY), f"the API imported {loaded & set(HEAVY)}"
    assert not failures, failures
