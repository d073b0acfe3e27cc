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
    assert not list(worker.layer_dirs["EngineDepsLayer"].rglob("__pycache__"))


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
