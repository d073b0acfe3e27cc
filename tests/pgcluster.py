"""A throwaway Postgres cluster of the test's own, which a test may stop and start.

Used when no server answers on 127.0.0.1:5432, and by the outage tests, which must stop
a server without stopping the one other tests use.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
from pathlib import Path


def port_open(host: str, port: int) -> bool:
    """Whether something accepts TCP connections at ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def bindir() -> Path | None:
    """The newest installed Postgres server's ``bin`` folder, or None."""
    initdbs = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb")) or (
        [shutil.which("initdb")] if shutil.which("initdb") else []
    )
    return Path(initdbs[-1]).parent if initdbs and initdbs[-1] else None


class Cluster:
    """``initdb`` in ``tmp`` (trust auth), served on a free port of 127.0.0.1."""

    def __init__(self, tmp: Path) -> None:
        found = bindir()
        if found is None:
            raise FileNotFoundError("no Postgres server is installed (initdb not found)")
        self.bin = found
        self.tmp = tmp
        self.data = tmp / "pgdata"
        # initdb and postgres refuse to run as root.
        self.run_as = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if os.geteuid() == 0:
            tmp.chmod(0o777)
        subprocess.run(
            [
                *self.run_as,
                str(self.bin / "initdb"),
                "-D",
                str(self.data),
                "-A",
                "trust",
                "-U",
                "postgres",
            ],
            check=True,
            capture_output=True,
        )
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = int(s.getsockname()[1])
        self.running = False

    @property
    def url(self) -> str:
        """The server's base URL (no database part)."""
        return f"postgresql://postgres@127.0.0.1:{self.port}"

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        options = f"-p {self.port} -k {self.tmp} -c listen_addresses=127.0.0.1"
        subprocess.run(
            [
                *self.run_as,
                str(self.bin / "pg_ctl"),
                "start",
                "-w",
                "-t",
                "60",
                "-D",
                str(self.data),
                "-l",
                str(self.tmp / "server.log"),
                "-o",
                options,
            ],
            check=True,
            capture_output=True,
        )
        self.running = True

    def stop(self) -> None:
        """Stop the server (a fast shutdown: sessions are cut, as in an outage)."""
        if self.running:
            subprocess.run(
                [
                    *self.run_as,
                    str(self.bin / "pg_ctl"),
                    "stop",
                    "-w",
                    "-m",
                    "fast",
                    "-D",
                    str(self.data),
                ],
                check=True,
                capture_output=True,
            )
            self.running = False

    def remove(self) -> None:
        """Stop the server and delete its files."""
        self.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)
