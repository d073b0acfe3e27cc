#!/usr/bin/env python3
"""Build the Lambda layers' dependency folders, reproducibly, for python3.13 on x86_64.

``sam build`` runs this through ``layers/Makefile`` (``BuildMethod: makefile``); it needs
only a Python >= 3.11 with pip and the package index, no Docker and no Python 3.13:

    python3 build_layer.py install --lock requirements/engine.txt --out "$ARTIFACTS_DIR/python"
    python3 build_layer.py lock                # re-resolve requirements/*.in into *.txt

``install`` installs exactly the pinned wheels of a lock file (``--no-deps``: the lock holds
every transitive dependency) for Lambda's platform, whatever machine builds, then trims what
a Lambda never loads (the way well-known pyarrow layers do): test suites, C/C++ headers,
Cython sources, static libraries, and pyarrow's Flight and Substrait modules. Then it
compiles the bytecode Lambda would otherwise compile on every cold start:

    python3 build_layer.py compile --out "$ARTIFACTS_DIR/python"

``/opt`` is read-only on Lambda, so Python cannot cache what it compiles there: without
shipped bytecode the API handler's import took 2.5-3.3 s from the built layers against
1.0-1.2 s with it (5 fresh processes each, PYTHONDONTWRITEBYTECODE, the same machine).
The bytecode is written by a CPython 3.13 (the runtime's version; its magic number is
fixed within 3.13) in ``unchecked-hash`` mode, so it is used without comparing source
timestamps, which zipping and unzipping do not keep exactly.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

HERE = Path(__file__).resolve().parent
REQUIREMENTS = HERE / "requirements"

#: Lambda's python3.13 runtime (Amazon Linux 2023, glibc 2.34) on x86_64: every manylinux
#: tag it can load. pyarrow >= 21 publishes only manylinux_2_28 wheels.
PLATFORMS = (
    "manylinux_2_34_x86_64",
    "manylinux_2_28_x86_64",
    "manylinux_2_17_x86_64",
    "manylinux2014_x86_64",
)
PYTHON_VERSION = "3.13"

#: Shipped by Lambda's python3.13 runtime itself: a layer copy would only shadow it and
#: cost ~90 MB unzipped (botocore's data), pulled in by e.g. aws-xray-sdk.
RUNTIME_PROVIDED = ("boto3", "botocore", "s3transfer")

#: layer name -> the ``.in`` files resolved into ``requirements/<layer>.txt``.
LAYERS: dict[str, tuple[str, ...]] = {
    "api": ("core.in", "api.in"),
    "engine": ("core.in", "engine.in"),
}

#: Anywhere in a layer: nothing here is loaded at run time. Bytecode caches that pip or a
#: build left are dropped too: :func:`compile_bytecode` writes them anew for Lambda's
#: interpreter.
DROP_DIR_NAMES = {"__pycache__"}
DROP_SUFFIXES = (".pyc", ".pyo", ".pyx", ".pxd", ".pxi", ".a", ".h", ".hpp", ".cc", ".cpp")

#: Per package: folders and files (globs relative to the package) never imported by a
#: Lambda. Flight (RPC) and Substrait (query plans) are optional pyarrow modules;
#: libarrow_substrait.so itself stays because libarrow_python links it. The unversioned
#: and fully versioned copies of libarrow_python* are byte-identical to the soname copy
#: (``.so.NNNN``), which is the only one the loader opens.
PACKAGE_TRIMS: dict[str, tuple[str, ...]] = {
    "pyarrow": (
        "include",
        "includes",
        "src",
        "tests",
        "libarrow_flight.so*",
        "libarrow_python_flight.so*",
        "_flight.*.so",
        "flight.py",
        "_substrait.*.so",
        "substrait.py",
        "_pyarrow_cpp_tests.*.so",
        "libgandiva.so*",
        "gandiva.*.so",
        "libarrow_python.so",
        "libarrow_python.so.*.*.*",
        "libarrow_python_parquet_encryption.so",
        "libarrow_python_parquet_encryption.so.*.*.*",
        "*.cmake",
        "cmake",
    ),
    "numpy": ("tests", "*/tests", "_core/include", "_core/lib/pkgconfig", "f2py", "testing"),
    "fastavro": ("tests",),
}


def _say(msg: str) -> None:
    print(f"[build-layer] {msg}", file=sys.stderr, flush=True)


def _pip(python: str) -> list[str]:
    return [python, "-m", "pip", "--disable-pip-version-check"]


def _platform_args() -> list[str]:
    args: list[str] = []
    for tag in PLATFORMS:
        args += ["--platform", tag]
    return [
        *args,
        "--implementation",
        "cp",
        "--python-version",
        PYTHON_VERSION,
        "--only-binary=:all:",
    ]


def install(lock: Path, out: Path, python: str = sys.executable) -> int:
    """Install the pinned wheels of ``lock`` into ``out`` and trim them.

    Parameters
    ----------
    lock:
        A lock file written by :func:`lock` (``name==version`` lines, every dependency).
    out:
        The layer's ``python/`` folder (what Lambda mounts as ``/opt/python``).
    python:
        The interpreter whose pip installs; any Python >= 3.11 (wheels are chosen by tag).

    Returns
    -------
    int
        The trimmed folder's size in bytes.
    """
    out.mkdir(parents=True, exist_ok=True)
    cmd = [
        *_pip(python),
        "install",
        "--quiet",
        "--no-compile",
        "--no-deps",
        "--upgrade",
        "--target",
        str(out),
        *_platform_args(),
        "-r",
        str(lock),
    ]
    _say(f"installing {lock.name} into {out}")
    subprocess.run(cmd, check=True)
    before = tree_size(out)
    trim(out)
    compile_bytecode(out)
    after = tree_size(out)
    _say(f"{lock.name}: {before:,} bytes installed, {after:,} after trimming")
    return after


def python313() -> str | None:
    """A CPython 3.13 on this machine (Lambda's runtime version): this interpreter,
    ``DATALAKE_PYTHON313``, ``python3.13`` on PATH, or pyenv's build; None if none runs."""
    if sys.version_info[:2] == (3, 13):
        return sys.executable
    candidates = [os.environ.get("DATALAKE_PYTHON313", ""), shutil.which("python3.13") or ""]
    roots = [os.environ.get("PYENV_ROOT", ""), str(Path.home() / ".pyenv")]
    for root in filter(None, roots):
        candidates += sorted(str(p) for p in Path(root).glob("versions/3.13*/bin/python3.13"))
    for c in filter(None, candidates):
        probe = [c, "-c", "import sys; assert sys.version_info[:2] == (3, 13)"]
        if subprocess.run(probe, capture_output=True).returncode == 0:
            return c
    return None


def compile_bytecode(root: Path, *, required: bool = False) -> bool:
    """Compile every module under a layer's ``python/`` folder for Lambda's CPython 3.13.

    Parameters
    ----------
    root:
        The layer's ``python/`` folder (mounted as ``/opt/python``).
    required:
        Fail when no Python 3.13 is found (otherwise the layer ships sources only, and
        says so).

    Returns
    -------
    bool
        Whether bytecode was written.
    """
    python = python313()
    if python is None:
        msg = "no Python 3.13 found: the layer ships no bytecode (slower cold starts)"
        if required:
            raise SystemExit(f"[build-layer] {msg}")
        _say(f"WARNING: {msg}")
        return False
    cmd = [
        python, "-m", "compileall", "-q", "-j", "0", "--invalidation-mode", "unchecked-hash",
        # Tracebacks name the paths Lambda mounts, not the build machine's.
        "-s", str(root), "-p", "/opt/python", str(root),
    ]
    # compileall exits 1 when some file does not compile (vendored Python 2 examples,
    # templates named .py); those are never imported, and the rest is written.
    subprocess.run(cmd, check=False, stdout=subprocess.DEVNULL)
    _say(f"bytecode compiled with {python} into {root}")
    return True


def trim(root: Path) -> None:
    """Delete what a Lambda never loads from an installed layer folder (see module doc)."""
    for pkg, patterns in PACKAGE_TRIMS.items():
        base = root / pkg
        if not base.is_dir():
            continue
        for pattern in patterns:
            for hit in sorted(base.glob(pattern)):
                _remove(hit)
    for path in sorted(root.rglob("*"), reverse=True):
        if path.is_dir() and path.name in DROP_DIR_NAMES:
            _remove(path)
        elif path.is_file() and path.name.endswith(DROP_SUFFIXES):
            path.unlink()
    # pip's bin/ holds console scripts whose shebang names the build machine's python
    _remove(root / "bin")
    strip_debug_symbols(root)


def strip_debug_symbols(root: Path) -> None:
    """Drop symbol tables and debug info from the layer's ELF extensions (GNU strip).

    pyarrow's, fastavro's and SQLAlchemy's wheels ship unstripped: this saves about 47 MB of
    the engine layer, which is the room left for pyiceberg. Libraries vendored by
    auditwheel (``*.libs/``) are left alone: their names and RPATHs were patched, and they
    are small. Without GNU strip (e.g. on macOS) the layer is built unstripped, and the
    size test says whether it still fits.
    """
    strip = shutil.which("strip")
    if strip is None or sys.platform != "linux":
        _say("GNU strip not found: extension modules are left unstripped")
        return
    targets = [
        p
        for p in sorted(root.rglob("*.so*"))
        if p.is_file()
        and not p.is_symlink()
        and not any(part.endswith(".libs") for part in p.relative_to(root).parts)
        and p.read_bytes()[:4] == b"\x7fELF"
    ]
    for i in range(0, len(targets), 200):
        subprocess.run([strip, "--strip-unneeded", *map(str, targets[i : i + 200])], check=True)


def _remove(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink(missing_ok=True)
    elif path.is_dir():
        shutil.rmtree(path, ignore_errors=True)


def tree_size(root: Path) -> int:
    """Bytes of every regular file under ``root`` (what Lambda counts, unzipped)."""
    total = 0
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            p = os.path.join(dirpath, name)
            if not os.path.islink(p):
                total += os.path.getsize(p)
    return total


def resolve(inputs: Sequence[Path], constraints: Iterable[Path], python: str) -> list[str]:
    """Resolve requirement files for Lambda's platform; ``name==version`` lines, sorted."""
    with tempfile.TemporaryDirectory(prefix="dl-lock-") as tmp:
        report = Path(tmp) / "report.json"
        cmd = [
            *_pip(python),
            "install",
            "--quiet",
            "--dry-run",
            "--ignore-installed",
            "--target",
            str(Path(tmp) / "t"),
            *_platform_args(),
            "--report",
            str(report),
        ]
        for c in constraints:
            cmd += ["-c", str(c)]
        for i in inputs:
            cmd += ["-r", str(i)]
        subprocess.run(cmd, check=True)
        data = json.loads(report.read_text())
    pins = {
        item["metadata"]["name"].lower().replace("_", "-"): item["metadata"]["version"]
        for item in data["install"]
    }
    for name in RUNTIME_PROVIDED:
        pins.pop(name, None)
    return [f"{name}=={version}" for name, version in sorted(pins.items())]


def lock(constraints: Sequence[Path], python: str = sys.executable) -> None:
    """Re-resolve ``requirements/*.in`` into the layers' lock files ``requirements/*.txt``."""
    for layer, ins in LAYERS.items():
        pins = resolve([REQUIREMENTS / i for i in ins], constraints, python)
        header = (
            f"# The {layer} layer's lock: every package and version it installs (--no-deps).\n"
            f"# Generated from {' + '.join(ins)} by `python3 layers/build_layer.py lock`;"
            " do not edit by hand.\n"
        )
        (REQUIREMENTS / f"{layer}.txt").write_text(header + "\n".join(pins) + "\n")
        _say(f"requirements/{layer}.txt: {len(pins)} packages")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p_inst = sub.add_parser("install", help="install a lock file into a layer folder, trimmed")
    p_inst.add_argument("--lock", required=True, type=Path)
    p_inst.add_argument("--out", required=True, type=Path)
    p_comp = sub.add_parser("compile", help="compile a layer folder's bytecode for Lambda")
    p_comp.add_argument("--out", required=True, type=Path)
    p_lock = sub.add_parser("lock", help="re-resolve requirements/*.in into *.txt")
    p_lock.add_argument(
        "-c",
        "--constraint",
        action="append",
        type=Path,
        default=[],
        help="extra constraints (e.g. the dev venv's `pip freeze`, to ship what is tested)",
    )
    args = ap.parse_args(argv)
    if args.cmd == "install":
        install(args.lock.resolve(), args.out.resolve())
    elif args.cmd == "compile":
        compile_bytecode(args.out.resolve())
    else:
        lock(args.constraint)
    return 0


if __name__ == "__main__":
    sys.exit(main())
