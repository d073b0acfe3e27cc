"""What the local tooling needs from this machine: Python 3.13, subprocesses, file locks.

Shared by the local stack and ``sam_build.py``; each passes the error class its callers
catch (:class:`~dl_stack.report.StackError`, ``sam_build.BuildError``).
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path

_PROBE = "import sys; assert sys.version_info[:2] == (3, 13); print(sys.executable)"


def find_python313(error: type[Exception] = RuntimeError) -> str:
    """The path of a Python 3.13 interpreter's real binary.

    Looks at ``DATALAKE_LOCALSTACK_BASE_PYTHON``, ``python3.13`` on PATH, then pyenv's
    builds. The binary, not a pyenv shim: a shim resolves by the caller's folder.

    Parameters
    ----------
    error:
        Raised, with an explanation, when none is found.
    """
    candidates: list[str] = []
    if os.environ.get("DATALAKE_LOCALSTACK_BASE_PYTHON"):
        candidates.append(os.environ["DATALAKE_LOCALSTACK_BASE_PYTHON"])
    if shutil.which("python3.13"):
        candidates.append("python3.13")
    roots = []
    if os.environ.get("PYENV_ROOT"):
        roots.append(os.environ["PYENV_ROOT"])
    if shutil.which("pyenv"):
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            roots.append(
                subprocess.run(
                    ["pyenv", "root"], capture_output=True, text=True, timeout=10, check=True
                ).stdout.strip()
            )
    roots.append(os.path.expanduser("~/.pyenv"))
    for root in roots:
        candidates.extend(sorted(glob.glob(f"{root}/versions/3.13*/bin/python3.13"), reverse=True))
    for cand in candidates:
        try:
            probe = subprocess.run(
                [cand, "-c", _PROBE], capture_output=True, text=True, timeout=30, check=True
            )
        except (subprocess.SubprocessError, OSError):
            continue
        if probe.stdout.strip():
            return probe.stdout.strip()
    raise error(
        "Python 3.13 not found: put python3.13 on PATH or install it with pyenv "
        "(LocalStack 2026.3 needs Python >= 3.12 syntax)"
    )


def run(
    cmd: list[str],
    error: type[Exception] = RuntimeError,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> str:
    """Run ``cmd`` to completion; its output, or ``error`` with the output's tail.

    Parameters
    ----------
    cmd:
        The command and its arguments.
    error:
        Raised when the command exits non-zero.
    env, cwd:
        As for :func:`subprocess.run`.
    """
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=cwd)
    if proc.returncode != 0:
        raise error(
            f"command failed ({proc.returncode}): {' '.join(cmd)}\n"
            f"{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
        )
    return proc.stdout + proc.stderr


def is_current(exe: Path, stamp: Path, want: str) -> bool:
    """``exe`` exists and ``stamp`` records ``want``: an installed venv needs nothing done."""
    return exe.exists() and stamp.exists() and stamp.read_text() == want


class FileLock:
    """An exclusive ``flock`` on ``path`` while in the ``with`` block.

    Serialises installs and start-ups (two pytest sessions, or a test and a shell).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd: int | None = None

    def __enter__(self) -> FileLock:
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc: object) -> None:
        import fcntl

        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None
