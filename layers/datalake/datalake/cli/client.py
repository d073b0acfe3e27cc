"""The CLI's connection to the API: profiles, the JSON client and its errors (stdlib only).

Nothing here imports typer or rich, so tests and scripts (``tests/e2e``, ``demo.py``) can
use :class:`ApiClient` without the CLI's own dependencies.

Where the API URL and token come from, first match wins:

1. ``--api-url`` / ``--token`` on the command line;
2. ``DATALAKE_API_URL`` / ``DATALAKE_TOKEN`` in the environment;
3. the chosen profile (``--profile``, else ``default_profile`` of the config file, else
   ``local``) of ``DATALAKE_CONFIG`` or ``~/.config/datalake/config.toml``::

       default_profile = "local"

       [profiles.prod]
       api_url = "https://abc.execute-api.eu-west-1.amazonaws.com/prod"
       token_env = "DATALAKE_PROD_TOKEN"     # or token = "..."
       landing_bucket = "my-landing"
       region = "eu-west-1"

   The built-in profile ``local`` reads ``.datalake/local.env`` (what ``make up`` writes);
   a profile may also name an ``env_file`` of its own.
"""

from __future__ import annotations

import json
import os
import tomllib
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "ApiClient",
    "ApiError",
    "ApiUnreachable",
    "CliError",
    "Profile",
    "config_path",
    "load_local_env",
    "resolve_profile",
]

#: The repository checkout this package was installed from (editable installs).
REPO_ROOT = Path(__file__).resolve().parents[4]
LOCAL_ENV = Path(".datalake") / "local.env"


class CliError(RuntimeError):
    """An error the CLI reports as one line on stderr (exit status ``exit_code``)."""

    exit_code = 1


class ApiUnreachable(CliError):
    """The API did not answer at all (nothing listening, DNS, timeout)."""


class ApiError(CliError):
    """The API answered with a non-2xx status."""

    def __init__(self, method: str, path: str, status: int, detail: Any) -> None:
        self.method, self.path, self.status, self.detail = method, path, status, detail
        super().__init__(f"{method} {path} -> {status}: {_detail_text(detail)}")


def _detail_text(detail: Any) -> str:
    """A FastAPI ``detail`` (a message, or a list of field errors) as one line."""
    if isinstance(detail, dict) and "detail" in detail:
        detail = detail["detail"]
    if isinstance(detail, list):
        parts = []
        for item in detail:
            if isinstance(item, dict) and "msg" in item:
                loc = ".".join(str(p) for p in item.get("loc", []) if p != "body")
                parts.append(f"{loc}: {item['msg']}" if loc else str(item["msg"]))
            else:
                parts.append(json.dumps(item, default=str))
        detail = "; ".join(parts)
    elif not isinstance(detail, str):
        detail = json.dumps(detail, default=str)
    return " ".join(str(detail).split())  # one line, whatever the server sent


def load_local_env(path: str | Path = LOCAL_ENV) -> dict[str, str]:
    """Parse the shell assignments of ``.datalake/local.env`` (missing file -> {}).

    Parameters
    ----------
    path:
        The file; a relative path is looked up in the working directory, then in the
        checkout this package was installed from.
    """
    out: dict[str, str] = {}
    p = Path(path)
    if not p.is_absolute() and not p.exists():
        p = REPO_ROOT / p
    if not p.exists():
        return out
    for line in p.read_text().splitlines():
        line = line.strip().removeprefix("export ").strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, value = line.split("=", 1)
        out[key.strip()] = value.strip().strip("'\"")
    return out


def config_path() -> Path:
    """``DATALAKE_CONFIG``, else ``$XDG_CONFIG_HOME/datalake/config.toml``."""
    if os.environ.get("DATALAKE_CONFIG"):
        return Path(os.environ["DATALAKE_CONFIG"]).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(base) / "datalake" / "config.toml"


@dataclass
class Profile:
    """Where the API and the buckets are, for one named profile."""

    name: str
    api_url: str | None = None
    token: str | None = None
    aws_endpoint_url: str | None = None
    region: str | None = None
    landing_bucket: str | None = None
    lake_bucket: str | None = None
    database_url: str | None = None
    #: Where the values came from, for error messages ("profile local (.datalake/local.env)").
    origin: str = ""
    env: dict[str, str] = field(default_factory=dict)

    @property
    def is_local(self) -> bool:
        """Whether this is the local stack's own profile (``.datalake/local.env``)."""
        return self.name == "local"

    def require_api(self) -> str:
        """The API URL, or a :class:`CliError` saying how to set one."""
        if not self.api_url:
            hint = (
                "the local stack is not up (make up, or datalake up)"
                if self.is_local
                else f"profile {self.name!r} sets no api_url"
            )
            raise CliError(f"no API URL: pass --api-url, set DATALAKE_API_URL, or {hint}")
        return self.api_url

    def client(self, timeout: float = 60) -> ApiClient:
        """An :class:`ApiClient` for this profile."""
        return ApiClient(self.require_api(), self.token, timeout=timeout)


def _read_config(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    try:
        return tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise CliError(f"cannot read the config file {path}: {e}") from e


def _from_env_file(name: str, env: dict[str, str], origin: str) -> Profile:
    return Profile(
        name=name,
        api_url=env.get("DATALAKE_API_URL"),
        token=env.get("DATALAKE_TOKEN"),
        aws_endpoint_url=env.get("AWS_ENDPOINT_URL"),
        region=env.get("AWS_DEFAULT_REGION"),
        landing_bucket=env.get("DATALAKE_LANDING_BUCKET"),
        lake_bucket=env.get("DATALAKE_LAKE_BUCKET"),
        database_url=env.get("DATABASE_URL"),
        origin=origin,
        env=env,
    )


def resolve_profile(
    name: str | None = None,
    *,
    api_url: str | None = None,
    token: str | None = None,
    environ: dict[str, str] | None = None,
) -> Profile:
    """The effective connection settings: flags, then the environment, then the profile.

    Parameters
    ----------
    name:
        The profile to use; ``None`` = the config file's ``default_profile`` or ``local``.
    api_url, token:
        Values given on the command line; they win over everything else.
    environ:
        The environment (default ``os.environ``).

    Raises
    ------
    CliError
        When the named profile does not exist or the config file is unreadable.
    """
    environ = dict(os.environ if environ is None else environ)
    path = config_path()
    config = _read_config(path)
    chosen = name or environ.get("DATALAKE_PROFILE") or config.get("default_profile") or "local"
    profiles = config.get("profiles") or {}
    section = profiles.get(chosen)
    if section is None and chosen != "local":
        known = ", ".join(sorted({"local", *profiles})) or "local"
        raise CliError(f"no profile {chosen!r} in {path} (known: {known})")
    section = dict(section or {})
    env_file = section.pop("env_file", None) or (LOCAL_ENV if chosen == "local" else None)
    if env_file:
        profile = _from_env_file(chosen, load_local_env(env_file), f"profile {chosen} ({env_file})")
    else:
        profile = Profile(name=chosen, origin=f"profile {chosen} ({path})")
    token_env = section.pop("token_env", None)
    if token_env:
        profile.token = environ.get(str(token_env)) or profile.token
    for key, value in section.items():
        if hasattr(profile, key) and key not in ("name", "origin", "env"):
            setattr(profile, key, str(value))
    # The environment overrides a profile (as ``source .datalake/local.env`` always did).
    env_over = {
        "api_url": "DATALAKE_API_URL",
        "token": "DATALAKE_TOKEN",
        "aws_endpoint_url": "AWS_ENDPOINT_URL",
        "region": "AWS_DEFAULT_REGION",
        "landing_bucket": "DATALAKE_LANDING_BUCKET",
        "lake_bucket": "DATALAKE_LAKE_BUCKET",
    }
    for attr, var in env_over.items():
        if environ.get(var):
            setattr(profile, attr, environ[var])
    if api_url:
        profile.api_url = api_url
    if token:
        profile.token = token
    return profile


class ApiClient:
    """A small JSON client of the HTTP API (stdlib only).

    Parameters
    ----------
    base_url:
        The API's base URL (the stage URL on API Gateway), without ``/api/v1``.
    token:
        A bearer token, or ``None``.
    timeout:
        Seconds to wait for an answer.
    """

    def __init__(self, base_url: str, token: str | None, timeout: float = 60) -> None:
        self.base = base_url.rstrip("/")
        self.token = token
        self.timeout = timeout
        #: Sent as ``X-Correlation-Id`` when set, so one command's calls share one id.
        self.correlation_id: str | None = None

    @classmethod
    def from_env(cls) -> ApiClient:
        """A client for the environment, else the local stack (``.datalake/local.env``)."""
        return resolve_profile().client()

    def request(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> tuple[int, Any]:
        """Send one request; return ``(status, decoded JSON body)``.

        Raises
        ------
        ApiUnreachable
            When no answer came (connection refused, DNS failure, timeout).
        """
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base + path, data=data, method=method)
        req.add_header("Content-Type", "application/json")
        if self.token:
            req.add_header("Authorization", f"Bearer {self.token}")
        if self.correlation_id:
            req.add_header("X-Correlation-Id", self.correlation_id)
        for k, v in (headers or {}).items():
            req.add_header(k, v)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                raw = resp.read()
                return resp.status, _decode(raw)
        except urllib.error.HTTPError as e:
            raw = e.read()
            try:
                return e.code, json.loads(raw)
            except ValueError:
                return e.code, {"detail": raw.decode(errors="replace").strip() or e.reason}
        except (urllib.error.URLError, TimeoutError, ConnectionError) as e:
            reason = getattr(e, "reason", e)
            raise ApiUnreachable(f"cannot reach the API at {self.base}: {reason}") from e

    def call(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> Any:
        """Like :meth:`request`, raising :class:`ApiError` on a non-2xx answer."""
        status, payload = self.request(method, path, body, headers)
        if status >= 300:
            raise ApiError(method, path, status, payload)
        return payload

    def get(self, path: str, **params: Any) -> Any:
        """``GET path?params`` (``None`` values left out)."""
        query = urllib.parse.urlencode({k: v for k, v in params.items() if v is not None})
        return self.call("GET", path + (f"?{query}" if query else ""))


def _decode(raw: bytes) -> Any:
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return {"detail": raw.decode(errors="replace")}
