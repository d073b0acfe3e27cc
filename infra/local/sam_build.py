#!/usr/bin/env python3
"""``sam build`` of infra/template.yaml, offline (no Docker), cached by the hash of its inputs.

The AWS SAM CLI lives in its own virtual environment (``.datalake/tools/sam``: its pins
clash with the project's); builds go to ``.datalake/sam-build/<input hash>/``, so an
unchanged tree is built once and every later caller (the size test, the local stack's
deploy) reuses it in milliseconds.

    python infra/local/sam_build.py          # build (or reuse) and print the build folder
    python infra/local/sam_build.py sizes    # ... and print each function's unzipped size

Importable: ``build()``, ``function_sizes()``, ``ensure_sam()``, ``LAMBDA_UNZIPPED_LIMIT``.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # run as a script from elsewhere, or loaded by path
    sys.path.insert(0, str(HERE))

from dl_stack import host  # noqa: E402
from dl_stack.settings import REPO, STATE  # noqa: E402
from dl_stack.template import load_template  # noqa: E402

TOOLS = STATE / "tools"
BUILDS = STATE / "sam-build"
TEMPLATE = REPO / "infra" / "template.yaml"

#: The SAM CLI release the builds are made with (part of the cache key).
SAM_PIN = "aws-sam-cli==1.170.0"
#: Tools kept out of the project's venv: their pins clash with the project's (checkov pins
#: dozens of packages; aws-sam-cli pins pydantic and boto3). cfn-lint comes with SAM.
TOOL_PINS = {"sam": SAM_PIN, "checkov": "checkov==3.3.30"}
#: Lambda's limit on a function's code plus all its layers, unzipped (bytes).
LAMBDA_UNZIPPED_LIMIT = 262_144_000
#: Builds kept besides the newest (other worktrees' states, a bisect).
KEEP_BUILDS = 3

_IGNORED_PARTS = {"__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache", ".aws-sam"}


class BuildError(RuntimeError):
    """``sam build`` could not run or failed."""


def _say(msg: str) -> None:
    print(f"[sam-build] {msg}", file=sys.stderr, flush=True)


def _python313() -> str:
    return host.find_python313(BuildError)


def ensure_tool(name: str = "sam") -> Path:
    """A tool's executable from its own venv under .datalake/tools, installed on first use.

    Parameters
    ----------
    name:
        A key of :data:`TOOL_PINS` (``sam``, ``checkov``); ``cfn-lint`` comes with ``sam``.
    """
    pin = TOOL_PINS[name]
    venv = TOOLS / name
    exe = venv / "bin" / name
    stamp = venv / ".datalake-stamp"
    if host.is_current(exe, stamp, pin):
        return exe
    with host.FileLock(TOOLS / f"{name}.lock"):
        if host.is_current(exe, stamp, pin):
            return exe
        _say(f"installing {pin} into {venv}")
        if not (venv / "bin" / "python").exists():
            subprocess.run([_python313(), "-m", "venv", str(venv)], check=True)
        _run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", pin])
        stamp.write_text(pin)
    return exe


def ensure_sam() -> Path:
    """The ``sam`` executable of the tool venv, installed on first use (about a minute)."""
    return ensure_tool("sam")


def _run(cmd: list[str], env: Mapping[str, str] | None = None, cwd: Path | None = None) -> str:
    return host.run(cmd, BuildError, env=env, cwd=cwd)


def _inputs(template: Path) -> Iterator[Path]:
    """Every file the build reads: the template, the state machines, code and layers."""
    yield template
    for folder in (template.parent, REPO / "functions", REPO / "layers"):
        for p in sorted(folder.rglob("*")):
            rel = p.relative_to(REPO).parts
            if (
                p.is_file()
                and not (set(rel) & _IGNORED_PARTS)
                and not p.name.endswith((".pyc", ".pyo"))
                and not any(x.endswith(".egg-info") for x in rel)
                and "local" not in rel[:2]  # infra/local is tooling, not deployed
            ):
                yield p


def input_hash(template: Path = TEMPLATE) -> str:
    """The cache key: SAM's version and the content and path of every build input."""
    h = hashlib.sha256(SAM_PIN.encode())
    for p in _inputs(template):
        h.update(p.relative_to(REPO).as_posix().encode() + b"\0")
        h.update(hashlib.sha256(p.read_bytes()).digest())
    return h.hexdigest()[:20]


def build(template: Path = TEMPLATE, force: bool = False) -> Path:
    """Run ``sam build`` for ``template`` unless an identical build exists; its folder.

    Parameters
    ----------
    template:
        The SAM template (default infra/template.yaml).
    force:
        Rebuild even when a build of the same inputs exists.

    Returns
    -------
    Path
        The build folder; its ``template.yaml`` names each function's and layer's built
        folder relative to itself.
    """
    template = template.resolve()
    key = input_hash(template)
    out = BUILDS / key
    done = out / ".complete"
    if done.exists() and not force:
        return out
    sam = ensure_sam()
    with host.FileLock(BUILDS / "build.lock"):
        if done.exists() and not force:
            return out
        shutil.rmtree(out, ignore_errors=True)
        env = {k: v for k, v in os.environ.items() if k not in {"VIRTUAL_ENV", "PYTHONPATH"}}
        # SAM's python3.13 workflow (the functions) looks for python3.13 on PATH.
        py = _python313()
        env["PATH"] = os.pathsep.join([str(Path(py).parent), env.get("PATH", "/usr/bin:/bin")])
        env["PYTHON"] = py  # the layers' Makefile runs build_layer.py with it
        env["SAM_CLI_TELEMETRY"] = "0"
        env.pop("PYENV_VERSION", None)
        started = time.monotonic()
        _say(f"sam build {template.relative_to(REPO)} -> {out}")
        _run(
            [
                str(sam),
                "build",
                "--template-file",
                str(template),
                "--build-dir",
                str(out / "build"),
                "--parallel",
            ],
            env=env,
            cwd=REPO,
        )
        done.write_text(key)
        _say(f"built in {time.monotonic() - started:.1f}s")
        _prune(keep=out)
    return out


def _prune(keep: Path) -> None:
    olds = sorted(
        (d for d in BUILDS.iterdir() if d.is_dir() and d != keep),
        key=lambda d: d.stat().st_mtime,
        reverse=True,
    )
    for d in olds[KEEP_BUILDS:]:
        shutil.rmtree(d, ignore_errors=True)


def built_template(out: Path) -> Path:
    """The template ``sam build`` wrote (paths relative to it)."""
    return out / "build" / "template.yaml"


def tree_size(root: Path) -> int:
    """Bytes of every regular file under ``root`` (Lambda's unzipped measure): the layer
    builder's own measure, so the build and the size test count alike."""
    return int(_build_layer().tree_size(root))


def _build_layer() -> Any:
    # layers/build_layer.py is a script sam build runs, not a package: load it by path.
    import importlib.util

    path = Path(__file__).resolve().parents[2] / "layers" / "build_layer.py"
    spec = importlib.util.spec_from_file_location("build_layer", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@dataclass(frozen=True)
class FunctionSize:
    """One function's unzipped footprint: its code and each of its layers."""

    name: str
    code: Path
    code_bytes: int
    layers: dict[str, int]
    layer_dirs: dict[str, Path]

    @property
    def total(self) -> int:
        return self.code_bytes + sum(self.layers.values())


def function_sizes(out: Path) -> list[FunctionSize]:
    """Every function of a build with its layers (Globals' first, as SAM merges them)."""
    tpl_path = built_template(out)
    tpl = load_template(tpl_path)
    resources = tpl.get("Resources") or {}
    global_layers = ((tpl.get("Globals") or {}).get("Function") or {}).get("Layers") or []
    sizes = []
    for name, res in sorted(resources.items()):
        if res.get("Type") != "AWS::Serverless::Function":
            continue
        props = res.get("Properties") or {}
        code = (tpl_path.parent / props["CodeUri"]).resolve()
        layers: dict[str, int] = {}
        dirs: dict[str, Path] = {}
        for ref in [*global_layers, *(props.get("Layers") or [])]:
            if not (isinstance(ref, dict) and "Ref" in ref):
                raise BuildError(f"{name}: layer {ref!r} is not a layer of this template")
            layer = resources[ref["Ref"]]
            d = (tpl_path.parent / layer["Properties"]["ContentUri"]).resolve()
            layers[ref["Ref"]] = tree_size(d)
            dirs[ref["Ref"]] = d
        sizes.append(FunctionSize(name, code, tree_size(code), layers, dirs))
    return sizes


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    out = build(force="--force" in args)
    print(out)
    if "sizes" in args:
        for f in function_sizes(out):
            parts = ", ".join(f"{k} {v:,}" for k, v in f.layers.items())
            print(f"{f.name}: {f.total:,} bytes unzipped (code {f.code_bytes:,}; {parts})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
