"""The ``datalake`` command line (typer + rich).

The package ships in the shared layer, but no Lambda function imports it: typer and rich
are imported by :func:`main` only (``datalake.cli.app``), so importing this package, or
:class:`ApiClient` from it, costs no more than the standard library.
"""

from __future__ import annotations

from datalake.cli.client import (
    ApiClient,
    ApiError,
    ApiUnreachable,
    CliError,
    load_local_env,
    resolve_profile,
)

__all__ = [
    "ApiClient",
    "ApiError",
    "ApiUnreachable",
    "CliError",
    "load_local_env",
    "main",
    "resolve_profile",
]


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; return its exit status (the ``datalake`` console script).

    Parameters
    ----------
    argv:
        The arguments after the program name (default ``sys.argv[1:]``).
    """
    from datalake.cli.app import run

    return run(argv)
