#!/usr/bin/env python3
"""The local stack: LocalStack in host mode (no Docker) + the SAM template deployed into it.

Run with the project's virtual environment (needs boto3 and PyYAML):

    python infra/local/stack.py up        # venv + LocalStack + deploy + .datalake/local.env
    python infra/local/stack.py deploy    # (re)deploy infra/template.yaml as stack `datalake`
    python infra/local/stack.py env --set DATABASE_URL=... --set DATALAKE_TOKEN=...
    python infra/local/stack.py status
    python infra/local/stack.py down

Importable (tests): ``up()``, ``deploy()``, ``down()``, ``is_up()``, ``stack_outputs()``,
``write_local_env()``, ``read_local_env()``, ``client()``, ``delete_stack()``.

State lives under ``<repo>/.datalake`` (``DATALAKE_STATE_DIR`` overrides it):
``localstack-venv/`` (LocalStack's own Python 3.13 venv + the dl_localstack plugin),
``localstack/`` (FILESYSTEM_ROOT, TMPDIR, Lambda environment state), ``localstack.pid``,
``localstack.log``, ``lambda-logs/<function>.log``, ``local.env``.

Environment knobs: ``DATALAKE_LAMBDA_PYTHON`` (interpreter running the Lambda handlers;
default ``<repo>/.venv/bin/python``, else this interpreter), ``DATALAKE_LOCALSTACK_PORT``
(default 4566), ``DATALAKE_PARAM_<NAME>`` or ``<NAME>`` in UPPER_SNAKE (template
parameter values, e.g. ``DATABASE_URL`` for ``DatabaseUrl``).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import glob
import hashlib
import io
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, TypeGuard

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
STATE = Path(os.environ.get("DATALAKE_STATE_DIR") or REPO / ".datalake").resolve()
LS_VENV = STATE / "localstack-venv"
LS_DIR = STATE / "localstack"
PID_FILE = STATE / "localstack.pid"
LOG_FILE = STATE / "localstack.log"
ENV_FILE = STATE / "local.env"
LAMBDA_LOG_DIR = STATE / "lambda-logs"
LAMBDA_STATE_DIR = LS_DIR / "lambda"
PLUGIN_DIR = HERE / "dl_localstack"

PINS = ("localstack-core[runtime]==2026.3.0", "cbor2<6", "pyopenssl<26")
#: What Lambda's python3.13 runtime provides besides the function's code and layers.
LAMBDA_RUNTIME_PINS = ("boto3==1.44.8",)
LAMBDA_RUNTIME = STATE / "lambda-runtime"
EXECUTOR = "local-process"
PORT = int(os.environ.get("DATALAKE_LOCALSTACK_PORT") or 4566)
ENDPOINT = f"http://127.0.0.1:{PORT}"
REGION = "us-east-1"
ACCOUNT = "000000000000"
DEFAULT_TEMPLATE = REPO / "infra" / "template.yaml"
DEFAULT_STACK = "datalake"
DEPLOY_BUCKET = "datalake-local-deploy"
CAPABILITIES = ["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM", "CAPABILITY_AUTO_EXPAND"]
ZIP_EXCLUDE_DIRS = {
    "__pycache__",
    ".pytest_cache",
    ".mypy_cache",
    ".ruff_cache",
    ".git",
    ".aws-sam",
    ".venv",
    "node_modules",
}
ZIP_EXCLUDE_SUFFIXES = (".pyc", ".pyo", ".DS_Store")
# Outputs whose env name is not simply DATALAKE_<UPPER_SNAKE>
OUTPUT_ENV_NAMES = {
    "ApiUrl": "DATALAKE_API_URL",
    "LandingBucket": "DATALAKE_LANDING_BUCKET",
    "LakeBucket": "DATALAKE_LAKE_BUCKET",
}
BASE_ENV = {
    "AWS_ENDPOINT_URL": ENDPOINT,
    "AWS_DEFAULT_REGION": REGION,
    "AWS_ACCESS_KEY_ID": "test",
    "AWS_SECRET_ACCESS_KEY": "test",
}


class StackError(RuntimeError):
    """Anything that keeps the local stack from coming up or deploying."""


def _say(msg: str) -> None:
    print(f"[local-stack] {msg}", file=sys.stderr, flush=True)


# =============================================================================== YAML
def _yaml() -> Any:
    try:
        import yaml
    except ImportError as e:  # pragma: no cover - depends on the venv
        raise StackError("PyYAML is needed to read YAML templates: pip install pyyaml") from e
    return yaml


def _cfn_loader() -> Any:
    """A SafeLoader that turns CloudFormation short tags into their long JSON form."""
    yaml = _yaml()

    class CfnLoader(yaml.SafeLoader):  # type: ignore[name-defined]
        pass

    # CloudFormation keeps 2010-09-09 a string
    CfnLoader.yaml_implicit_resolvers = {
        k: [(tag, rx) for tag, rx in v if tag != "tag:yaml.org,2002:timestamp"]
        for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }

    def construct(loader: Any, tag_suffix: str, node: Any) -> Any:
        if isinstance(node, yaml.ScalarNode):
            value: Any = loader.construct_scalar(node)
        elif isinstance(node, yaml.SequenceNode):
            value = loader.construct_sequence(node, deep=True)
        else:
            value = loader.construct_mapping(node, deep=True)
        if tag_suffix == "Ref":
            return {"Ref": value}
        if tag_suffix == "Condition":
            return {"Condition": value}
        if tag_suffix == "GetAtt" and isinstance(value, str):
            value = value.split(".", 1)
        return {f"Fn::{tag_suffix}": value}

    CfnLoader.add_multi_constructor("!", construct)
    return CfnLoader


def load_template(path: str | os.PathLike[str]) -> dict[str, Any]:
    text = Path(path).read_text(encoding="utf-8")
    if text.lstrip().startswith("{"):
        return json.loads(text)
    return _load_yaml_text(text)


def _load_yaml_text(text: str) -> Any:
    return _yaml().load(text, Loader=_cfn_loader())


def _load_doc(path: Path) -> Any:
    text = path.read_text(encoding="utf-8")
    try:
        return json.loads(text)
    except ValueError:
        return _load_yaml_text(text)


# =============================================================================== AWS clients
def client(service: str, attempts: int = 3, **kwargs: Any) -> Any:
    """A boto3 client pointed at the local stack."""
    import boto3
    from botocore.config import Config

    make: Any = boto3.client  # untyped on purpose: boto3-stubs overloads per service name
    return make(
        service,
        endpoint_url=ENDPOINT,
        region_name=REGION,
        aws_access_key_id="test",
        aws_secret_access_key="test",
        config=Config(
            retries={"total_max_attempts": attempts, "mode": "standard"},
            connect_timeout=5,
            read_timeout=120,
        ),
        **kwargs,
    )


# =============================================================================== venv
def _find_python313() -> str:
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
            subprocess.run(
                [cand, "-c", "import sys; assert sys.version_info[:2] == (3, 13)"],
                capture_output=True,
                timeout=30,
                check=True,
            )
            return cand
        except (subprocess.SubprocessError, OSError):
            continue
    raise StackError(
        "Python 3.13 not found: put python3.13 on PATH or install it with pyenv "
        "(LocalStack 2026.3 needs Python >= 3.12 syntax)"
    )


def _plugin_files() -> list[Path]:
    return sorted(
        p
        for p in PLUGIN_DIR.rglob("*")
        if p.is_file()
        and not (set(p.relative_to(PLUGIN_DIR).parts) & ZIP_EXCLUDE_DIRS)
        and not p.name.endswith(ZIP_EXCLUDE_SUFFIXES)
        and ".egg-info" not in str(p)
        and "build" not in p.relative_to(PLUGIN_DIR).parts
    )


def _venv_stamp() -> str:
    h = hashlib.sha256("\n".join(PINS).encode())
    for p in _plugin_files():
        h.update(p.relative_to(PLUGIN_DIR).as_posix().encode() + b"\0" + p.read_bytes())
    return h.hexdigest()


def ensure_venv() -> Path:
    """Create/refresh LocalStack's own venv; ~instant when the stamp matches."""
    python = LS_VENV / "bin" / "python"
    stamp = LS_VENV / ".datalake-stamp"
    want = _venv_stamp()
    if python.exists() and stamp.exists() and stamp.read_text() == want:
        return python
    started = time.monotonic()
    if not python.exists():
        base = _find_python313()
        _say(f"creating LocalStack venv at {LS_VENV} with {base}")
        shutil.rmtree(LS_VENV, ignore_errors=True)
        _run([base, "-m", "venv", str(LS_VENV)])
    _say("installing " + " ".join(PINS))
    pip = [str(python), "-m", "pip", "install", "--disable-pip-version-check", "-q"]
    _run([*pip, *PINS])
    # build from a copy so setuptools leaves no build/ or egg-info in the repo
    with tempfile.TemporaryDirectory(prefix="dl-plugin-") as tmp:
        src = Path(tmp) / "src"
        shutil.copytree(
            PLUGIN_DIR,
            src,
            ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "build", "*.egg-info"),
        )
        _run([*pip, "--no-deps", "--force-reinstall", str(src)])
    stamp.write_text(want)
    _say(f"LocalStack venv ready in {time.monotonic() - started:.1f}s")
    return python


def _run(cmd: list[str]) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise StackError(
            f"command failed ({proc.returncode}): {' '.join(cmd)}\n"
            f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        )


# =============================================================================== process control
def _read_pid() -> int | None:
    try:
        pid = int(PID_FILE.read_text().strip())
    except (OSError, ValueError):
        pid = None
    if pid and _our_localstack(pid):
        return pid
    return _find_our_localstack() or pid


def _find_our_localstack() -> int | None:
    """A LocalStack runtime started by us (cwd = our LocalStack dir) without a pid file."""
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            if (
                "localstack.runtime.main" in _cmdline(int(entry.name))
                and Path(os.readlink(entry / "cwd")) == LS_DIR
            ):
                return int(entry.name)
        except (OSError, ValueError):
            continue
    return None


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie (our own child that exited) does not count
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _our_localstack(pid: int | None) -> bool:
    return bool(pid) and _alive(pid) and "localstack.runtime.main" in _cmdline(pid)  # type: ignore[arg-type]


def _healthy(timeout: float = 2.0) -> bool:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(f"{ENDPOINT}/_localstack/health", timeout=timeout) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


def is_up() -> bool:
    """Our LocalStack process is alive and answers its health check."""
    return _our_localstack(_read_pid()) and _healthy()


def ensure_lambda_runtime() -> Path:
    """The interpreter that runs the Lambda handlers: Python 3.13 with boto3 only.

    That is what Lambda's python3.13 runtime offers a function besides its code and
    layers, so a dependency missing from a layer fails here as it would on AWS (the
    project's .venv, which has everything, would hide it).
    """
    python = LAMBDA_RUNTIME / "bin" / "python"
    stamp = LAMBDA_RUNTIME / ".datalake-stamp"
    want = "\n".join(LAMBDA_RUNTIME_PINS)
    if python.exists() and stamp.exists() and stamp.read_text() == want:
        return python
    with _FileLock(STATE / "lambda-runtime.lock"):
        if python.exists() and stamp.exists() and stamp.read_text() == want:
            return python
        if not python.exists():
            _say(f"creating the Lambda runtime interpreter at {LAMBDA_RUNTIME}")
            _run([_find_python313(), "-m", "venv", str(LAMBDA_RUNTIME)])
        _run([str(python), "-m", "pip", "install", "--disable-pip-version-check", "-q",
              *LAMBDA_RUNTIME_PINS])
        stamp.write_text(want)
    return python


def _lambda_python() -> str:
    if os.environ.get("DATALAKE_LAMBDA_PYTHON"):
        return os.environ["DATALAKE_LAMBDA_PYTHON"]
    return str(ensure_lambda_runtime())


def _localstack_env() -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYENV_VERSION"}
    }
    env.update(
        {
            "GATEWAY_LISTEN": f"127.0.0.1:{PORT}",
            "GATEWAY_SERVER": "hypercorn",
            "OVERRIDE_IN_DOCKER": "0",
            "LOCALSTACK_HOST": f"127.0.0.1:{PORT}",
            "SQS_ENDPOINT_STRATEGY": "path",
            "DNS_ADDRESS": "0",
            "FILESYSTEM_ROOT": str(LS_DIR / "fs"),
            "TMPDIR": str(LS_DIR / "tmp"),
            "DISABLE_EVENTS": "1",
            "SKIP_SSL_CERT_DOWNLOAD": "1",
            # event sources poll an empty queue at least every second (default: back off to 10 s)
            "LAMBDA_EVENT_SOURCE_MAPPING_MAX_BACKOFF_ON_EMPTY_POLL_SEC": os.environ.get(
                "LAMBDA_EVENT_SOURCE_MAPPING_MAX_BACKOFF_ON_EMPTY_POLL_SEC", "1"
            ),
            "LAMBDA_RUNTIME_EXECUTOR": EXECUTOR,
            "DATALAKE_LAMBDA_PYTHON": _lambda_python(),
            "DATALAKE_LAMBDA_LOG_DIR": str(LAMBDA_LOG_DIR),
            "DATALAKE_LAMBDA_STATE_DIR": str(LAMBDA_STATE_DIR),
        }
    )
    return env


class _FileLock:
    """Serialises start-ups (two pytest sessions, or a test and a shell)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd: int | None = None

    def __enter__(self) -> _FileLock:
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


def start(timeout: float = 120.0) -> bool:
    """Start LocalStack in the background unless ours is already up. True if started."""
    if is_up():
        return False
    with _FileLock(STATE / "localstack.lock"):
        return _start_locked(timeout)


def _start_locked(timeout: float) -> bool:
    if is_up():
        return False
    python = ensure_venv()
    pid = _read_pid()
    if _our_localstack(pid):
        # alive but not healthy: maybe still starting, else restart it
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and _our_localstack(pid):
            if _healthy():
                return False
            time.sleep(0.5)
        stop()
    if _healthy():
        raise StackError(
            f"{ENDPOINT} is served by a process that is not ours "
            f"(no live pid in {PID_FILE}); stop it or set DATALAKE_LOCALSTACK_PORT"
        )
    lambda_python = _lambda_python()
    if not os.access(lambda_python, os.X_OK):
        raise StackError(f"DATALAKE_LAMBDA_PYTHON={lambda_python} is not executable")
    _kill_lambda_processes()
    for sub in ("tmp", "lambda"):
        shutil.rmtree(LS_DIR / sub, ignore_errors=True)
    for sub in ("fs", "tmp", "lambda"):
        (LS_DIR / sub).mkdir(parents=True, exist_ok=True)
    LAMBDA_LOG_DIR.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with open(LOG_FILE, "wb") as log:
        proc = subprocess.Popen(
            [str(python), "-m", "localstack.runtime.main"],
            env=_localstack_env(),
            cwd=str(LS_DIR),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    PID_FILE.write_text(str(proc.pid))
    deadline = time.monotonic() + timeout
    while True:
        text = LOG_FILE.read_text(errors="replace")
        if re.search(r"^Ready\.", text, re.M):
            break
        if proc.poll() is not None:
            PID_FILE.unlink(missing_ok=True)
            raise StackError(f"LocalStack exited with code {proc.returncode}:\n{_tail(text)}")
        if time.monotonic() > deadline:
            stop()
            raise StackError(f"LocalStack not ready after {timeout:.0f}s:\n{_tail(text)}")
        time.sleep(0.2)
    _say(
        f"LocalStack ready on {ENDPOINT} (pid {proc.pid}, {time.monotonic() - started:.1f}s, "
        f"lambda python {lambda_python})"
    )
    return True


def _tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.splitlines()[-lines:])


def _kill_lambda_processes() -> int:
    """Kill Lambda environment processes left by the executor (each leads its own group)."""
    killed = 0
    for f in (LAMBDA_STATE_DIR / "pids").glob("*"):
        try:
            pid = int(f.name)
        except ValueError:
            continue
        if _alive(pid) and "shim.py" in _cmdline(pid):
            for kill in (os.killpg, os.kill):
                try:
                    kill(pid, signal.SIGKILL)
                    killed += 1
                    break
                except (ProcessLookupError, PermissionError):
                    continue
        f.unlink(missing_ok=True)
    return killed


def stop(timeout: float = 10.0) -> None:
    """Stop our LocalStack: SIGTERM to its process group, SIGKILL after ``timeout``."""
    pid = _read_pid()
    if _our_localstack(pid):
        assert pid is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and _alive(pid):
            _reap(pid)
            time.sleep(0.1)
        if _alive(pid):
            _say(f"LocalStack did not stop within {timeout:.0f}s: SIGKILL")
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
            for _ in range(50):
                _reap(pid)
                if not _alive(pid):
                    break
                time.sleep(0.1)
    _kill_lambda_processes()
    PID_FILE.unlink(missing_ok=True)


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def down() -> None:
    """Stop LocalStack and forget the stack's env file. Idempotent."""
    was_up = _our_localstack(_read_pid())
    stop()
    ENV_FILE.unlink(missing_ok=True)
    _say("LocalStack stopped" if was_up else "LocalStack was not running")


def status() -> dict[str, Any]:
    pid = _read_pid()
    info: dict[str, Any] = {
        "up": is_up(),
        "pid": pid if _our_localstack(pid) else None,
        "endpoint": ENDPOINT,
    }
    if info["up"]:
        try:
            stacks = client("cloudformation").describe_stacks()["Stacks"]
            info["stacks"] = {s["StackName"]: s["StackStatus"] for s in stacks}
        except Exception as e:
            info["stacks_error"] = str(e)
    return info


# =============================================================================== packaging
def _zip_dir(src: Path, prefix: str = "") -> bytes:
    """A deterministic zip of ``src`` (fixed timestamps, sorted entries)."""
    files = sorted(
        p
        for p in src.rglob("*")
        if p.is_file()
        and not (set(p.relative_to(src).parts[:-1]) & ZIP_EXCLUDE_DIRS)
        and not p.name.endswith(ZIP_EXCLUDE_SUFFIXES)
        and not any(part.endswith(".egg-info") for part in p.relative_to(src).parts)
    )
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for p in files:
            info = zipfile.ZipInfo(prefix + p.relative_to(src).as_posix(), (1980, 1, 1, 0, 0, 0))
            mode = 0o755 if os.access(p, os.X_OK) else 0o644
            info.external_attr = (0o100000 | mode) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, p.read_bytes())
    return buf.getvalue()


def _zip_built_dir(src: Path, prefix: str = "") -> bytes:
    """:func:`_zip_dir`, kept beside a finished ``sam build`` (its folders never change:
    a build's folder name is the hash of its inputs), so a redeploy does not re-deflate
    a 170 MB layer."""
    marker = next((p / ".complete" for p in src.parents if (p / ".complete").exists()), None)
    if marker is None:
        return _zip_dir(src, prefix)
    name = hashlib.sha256(f"{src}|{prefix}".encode()).hexdigest()[:24]
    cache = marker.parent / "zips" / f"{name}.zip"
    if cache.exists():
        return cache.read_bytes()
    data = _zip_dir(src, prefix)
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(".tmp")
    tmp.write_bytes(data)
    tmp.replace(cache)
    return data


class _Uploader:
    def __init__(self, stack_name: str, bucket: str = DEPLOY_BUCKET) -> None:
        self.s3 = client("s3")
        self.bucket = bucket
        self.prefix = stack_name
        self._bucket_ready = False

    def _ensure_bucket(self) -> None:
        if self._bucket_ready:
            return
        try:
            self.s3.head_bucket(Bucket=self.bucket)
        except Exception:
            self.s3.create_bucket(Bucket=self.bucket)
        self._bucket_ready = True

    def put(self, name: str, data: bytes, ext: str) -> str:
        self._ensure_bucket()
        key = f"{self.prefix}/{name}-{hashlib.sha256(data).hexdigest()[:24]}{ext}"
        try:
            self.s3.head_object(Bucket=self.bucket, Key=key)
        except Exception:
            self.s3.put_object(Bucket=self.bucket, Key=key, Body=data)
        return key


def _is_local(uri: Any) -> TypeGuard[str]:
    return isinstance(uri, str) and not re.match(r"^[a-z0-9]+://", uri)


def package_template(template: Mapping[str, Any], base_dir: Path, uploader: Any) -> dict[str, Any]:
    """What ``sam build`` + ``sam package`` do, minus dependency installation."""
    t: dict[str, Any] = copy.deepcopy(dict(template))
    cache: dict[tuple[str, str], str] = {}

    def code_dir(uri: str) -> Path:
        path = (base_dir / uri).resolve()
        if not path.exists():
            raise StackError(f"{uri}: no such file or directory (relative to {base_dir})")
        return path

    def upload_zip(name: str, uri: str, layer: bool = False) -> tuple[str, str]:
        path = code_dir(uri)
        if path.is_file() and path.suffix == ".zip":
            data = path.read_bytes()
        else:
            under = "python/" if layer and not (path / "python").is_dir() else ""
            data = _zip_built_dir(path, under)
        k = (str(path), "layer" if layer else "code")
        if k not in cache:
            cache[k] = uploader.put(name, data, ".zip")
        return uploader.bucket, cache[k]

    def s3_uri(name: str, uri: str, layer: bool = False) -> str:
        bucket, key = upload_zip(name, uri, layer)
        return f"s3://{bucket}/{key}"

    globals_fn = t.get("Globals", {}).get("Function", {}) or {}
    global_code = globals_fn.get("CodeUri")
    if _is_local(global_code):
        globals_fn["CodeUri"] = s3_uri("globals", global_code)

    for name, res in (t.get("Resources") or {}).items():
        typ = res.get("Type")
        props = res.setdefault("Properties", {}) if isinstance(res, dict) else {}
        if props is None:
            props = res["Properties"] = {}
        if typ == "AWS::Serverless::Function":
            if props.get("PackageType") == "Image" or "InlineCode" in props:
                continue
            uri = props.get("CodeUri", None if global_code else ".")
            if _is_local(uri):
                props["CodeUri"] = s3_uri(name, uri)
        elif typ == "AWS::Serverless::LayerVersion":
            uri = props.get("ContentUri")
            if _is_local(uri):
                props["ContentUri"] = s3_uri(name, uri, layer=True)
        elif typ == "AWS::Serverless::StateMachine":
            uri = props.get("DefinitionUri")
            if _is_local(uri):
                # As `sam package` does: upload it (as JSON), SAM turns it into
                # DefinitionS3Location. Not inlined as `Definition`: LocalStack's CloudFormation
                # engine fails on JSON nulls in a template ("ResultPath": null is common ASL).
                asl = json.dumps(_load_doc(code_dir(uri)), indent=1).encode()
                props["DefinitionUri"] = {
                    "Bucket": uploader.bucket,
                    "Key": uploader.put(name, asl, ".asl.json"),
                }
        elif typ in ("AWS::Serverless::Api", "AWS::Serverless::HttpApi"):
            uri = props.get("DefinitionUri")
            if _is_local(uri):
                props["DefinitionBody"] = _load_doc(code_dir(uri))
                del props["DefinitionUri"]
        elif typ == "AWS::Lambda::Function":
            uri = props.get("Code")
            if _is_local(uri):
                bucket, key = upload_zip(name, uri)
                props["Code"] = {"S3Bucket": bucket, "S3Key": key}
        elif typ == "AWS::Lambda::LayerVersion":
            uri = props.get("Content")
            if _is_local(uri):
                bucket, key = upload_zip(name, uri)
                props["Content"] = {"S3Bucket": bucket, "S3Key": key}
        elif typ == "AWS::StepFunctions::StateMachine":
            uri = props.get("DefinitionS3Location")
            if _is_local(uri):
                props["DefinitionString"] = code_dir(uri).read_text(encoding="utf-8")
                del props["DefinitionS3Location"]
    return t


def built_template_for(template: Path) -> Path:
    """``sam build`` the template (reusing an identical earlier build); the built template."""
    sys.path.insert(0, str(HERE))
    try:
        import sam_build
    finally:
        sys.path.remove(str(HERE))
    try:
        return Path(sam_build.built_template(sam_build.build(template)))
    except sam_build.BuildError as e:
        raise StackError(f"sam build failed: {e}") from e


# =============================================================================== deploy
_DONE_OK = {"CREATE_COMPLETE", "UPDATE_COMPLETE", "IMPORT_COMPLETE"}


def upper_snake(name: str) -> str:
    s = re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", name)
    return re.sub(r"[^A-Za-z0-9]+", "_", s).strip("_").upper()


def resolve_parameters(
    template: Mapping[str, Any],
    params: Mapping[str, str] | None,
    environ: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Values for the template's declared parameters: explicit > DATALAKE_PARAM_X > X."""
    environ = os.environ if environ is None else environ
    declared = template.get("Parameters") or {}
    unknown = set(params or {}) - set(declared)
    if unknown:
        raise StackError(
            f"template declares no parameter(s) {sorted(unknown)}; declared: {sorted(declared)}"
        )
    values: dict[str, str] = {}
    for name in declared:
        if params and name in params:
            values[name] = str(params[name])
            continue
        snake = upper_snake(name)
        for key in (f"DATALAKE_PARAM_{snake}", snake):
            if key in environ:
                values[name] = environ[key]
                break
    return values


def _describe(cfn: Any, stack_name: str) -> dict[str, Any] | None:
    try:
        return cfn.describe_stacks(StackName=stack_name)["Stacks"][0]
    except Exception as e:
        if "does not exist" in str(e):
            return None
        raise


def _wait(cfn: Any, stack_name: str, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        stack = _describe(cfn, stack_name)
        if stack is None:
            return {"StackStatus": "DELETE_COMPLETE"}
        if not stack["StackStatus"].endswith("_IN_PROGRESS"):
            return stack
        if time.monotonic() > deadline:
            raise StackError(
                f"stack {stack_name} still {stack['StackStatus']} after {timeout:.0f}s"
            )
        time.sleep(0.5)


def _failure_report(cfn: Any, stack_name: str, since: float) -> str:
    lines = []
    try:
        events = cfn.describe_stack_events(StackName=stack_name)["StackEvents"]
    except Exception as e:
        return f"(no events: {e})"
    for ev in reversed(events):
        ts = ev.get("Timestamp")
        if ts is not None and ts.timestamp() < since - 5:
            continue
        if ev.get("ResourceStatus", "").endswith("FAILED"):
            lines.append(
                f"  {ev.get('LogicalResourceId')} ({ev.get('ResourceType')}): "
                f"{ev.get('ResourceStatus')}: {ev.get('ResourceStatusReason')}"
            )
    return "\n".join(lines) or "  (no failed resource events)"


def _unchanged(
    cfn: Any,
    stack_name: str,
    packaged: Mapping[str, Any],
    existing: Mapping[str, Any],
    values: Mapping[str, str],
) -> bool:
    """Same template and parameter values as deployed (LocalStack updates anyway)."""
    current = {p["ParameterKey"]: p.get("ParameterValue") for p in existing.get("Parameters") or []}
    if any(current.get(k) != v for k, v in values.items()):
        return False
    try:
        body = cfn.get_template(StackName=stack_name, TemplateStage="Original")["TemplateBody"]
    except Exception:
        return False
    if isinstance(body, str):
        try:
            body = json.loads(body)
        except ValueError:
            return False
    return bool(json.loads(json.dumps(body)) == json.loads(json.dumps(packaged)))


def _log_hint() -> str:
    """The last LocalStack error lines, for errors LocalStack reports only as InternalError."""
    try:
        lines = LOG_FILE.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    errors = [line for line in lines if " ERROR " in line or "Error:" in line][-3:]
    hint = f"\n(see {LOG_FILE}; DEBUG=1 in the environment of `up` logs tracebacks)"
    return ("\nLocalStack log:\n  " + "\n  ".join(errors) if errors else "") + hint


def delete_stack(stack_name: str, timeout: float = 300.0) -> None:
    cfn = client("cloudformation")
    if _describe(cfn, stack_name) is None:
        return
    cfn.delete_stack(StackName=stack_name)
    final = _wait(cfn, stack_name, timeout)
    if final["StackStatus"] not in ("DELETE_COMPLETE",):
        raise StackError(f"deleting {stack_name}: {final['StackStatus']}")


def deploy(
    template: str | os.PathLike[str] | None = None,
    stack_name: str = DEFAULT_STACK,
    params: Mapping[str, str] | None = None,
    timeout: float = 600.0,
    build: bool | None = None,
) -> dict[str, str]:
    """Package and deploy a SAM template as ``stack_name`` (create or update). Returns outputs.

    Parameters
    ----------
    template:
        The SAM template (default infra/template.yaml).
    stack_name:
        The CloudFormation stack to create or update.
    params:
        Template parameter values (others come from the environment, see the module doc).
    timeout:
        Seconds to wait for the stack to settle.
    build:
        Deploy ``sam build``'s output of the template (cached by input hash) instead of its
        source folders; default: for the project's own template only.
    """
    path = Path(template or DEFAULT_TEMPLATE).resolve()
    if not path.exists():
        raise StackError(f"template not found: {path}")
    started = time.monotonic()
    since = time.time()
    if build is None:
        build = path == DEFAULT_TEMPLATE.resolve()
    if build:
        # What AWS would run: `sam build`'s output (layers with their dependencies
        # installed and trimmed), not the source folders.
        path = built_template_for(path)
    tpl = load_template(path)
    packaged = package_template(tpl, path.parent, _Uploader(stack_name))
    values = resolve_parameters(tpl, params)
    if "Environment" in (tpl.get("Parameters") or {}):
        # the template's switch for what LocalStack community cannot run (CodeDeploy,
        # SnapStart, the migration custom resource, VPC): always local here
        values.setdefault("Environment", "local")
    body = json.dumps(packaged)
    cfn = client("cloudformation")
    kwargs: dict[str, Any] = {"StackName": stack_name, "Capabilities": CAPABILITIES}
    if len(body) > 51_200:
        up = _Uploader(stack_name)
        key = up.put("template", body.encode(), ".json")
        kwargs["TemplateURL"] = f"{ENDPOINT}/{up.bucket}/{key}"
    else:
        kwargs["TemplateBody"] = body

    existing = _describe(cfn, stack_name)
    if existing and existing["StackStatus"].endswith("_IN_PROGRESS"):
        existing = _wait(cfn, stack_name, timeout)
    if existing and existing["StackStatus"] in {
        "ROLLBACK_COMPLETE",
        "ROLLBACK_FAILED",
        "CREATE_FAILED",
        "DELETE_FAILED",
        "DELETE_COMPLETE",
    }:
        if existing["StackStatus"] != "DELETE_COMPLETE":
            _say(f"stack {stack_name} is {existing['StackStatus']}: deleting it first")
            delete_stack(stack_name, timeout)
        existing = None

    if existing is None:
        kwargs["Parameters"] = [{"ParameterKey": k, "ParameterValue": v} for k, v in values.items()]
        try:
            # one attempt: a retried CreateStack after a 500 only says "already exists"
            client("cloudformation", attempts=1).create_stack(**kwargs)
        except Exception as e:
            # LocalStack leaves a stack that failed this early CREATE_IN_PROGRESS forever
            with contextlib.suppress(Exception):
                cfn.delete_stack(StackName=stack_name)
            raise StackError(f"create of stack {stack_name} refused: {e}{_log_hint()}") from e
        action = "create"
    else:
        previous = {p["ParameterKey"] for p in existing.get("Parameters") or []}
        declared = set(tpl.get("Parameters") or {})
        plist: list[dict[str, Any]] = [
            {"ParameterKey": k, "ParameterValue": v} for k, v in values.items()
        ]
        plist += [
            {"ParameterKey": k, "UsePreviousValue": True}
            for k in sorted((previous & declared) - set(values))
        ]
        kwargs["Parameters"] = plist
        if _unchanged(cfn, stack_name, packaged, existing, values):
            _say(f"stack {stack_name}: no changes ({time.monotonic() - started:.1f}s)")
            return stack_outputs(stack_name)
        try:
            client("cloudformation", attempts=1).update_stack(**kwargs)
            action = "update"
        except Exception as e:
            if "No updates are to be performed" in str(e):
                _say(f"stack {stack_name}: no changes ({time.monotonic() - started:.1f}s)")
                return stack_outputs(stack_name)
            raise StackError(f"update of stack {stack_name} refused: {e}{_log_hint()}") from e
    final = _wait(cfn, stack_name, timeout)
    if final["StackStatus"] not in _DONE_OK:
        raise StackError(
            f"{action} of stack {stack_name} ended {final['StackStatus']}"
            f" ({final.get('StackStatusReason') or 'no reason given'}):\n"
            + _failure_report(cfn, stack_name, since)
        )
    _say(f"stack {stack_name}: {final['StackStatus']} in {time.monotonic() - started:.1f}s")
    return stack_outputs(stack_name)


# =============================================================================== outputs / env
_EXECUTE_API = re.compile(
    r"^https?://(?P<api>[a-z0-9]+)\.execute-api\.[A-Za-z0-9.-]+(?::\d+)?"
    r"/(?P<stage>[^/?#]+)(?P<rest>[^?#]*)(?P<tail>.*)$"
)


def local_api_url(url: str) -> str:
    """Rewrite an AWS-style REST API stage URL to LocalStack's path-style one."""
    m = _EXECUTE_API.match(url)
    if not m:
        return url
    rest = m["rest"].rstrip("/")
    return f"{ENDPOINT}/_aws/execute-api/{m['api']}/{m['stage']}{rest}{m['tail']}"


def stack_outputs(stack_name: str = DEFAULT_STACK) -> dict[str, str]:
    stack = _describe(client("cloudformation"), stack_name)
    if stack is None:
        raise StackError(f"stack {stack_name} does not exist")
    return {
        o["OutputKey"]: local_api_url(str(o["OutputValue"])) for o in stack.get("Outputs") or []
    }


def output_env(outputs: Mapping[str, str]) -> dict[str, str]:
    return {OUTPUT_ENV_NAMES.get(k) or f"DATALAKE_{upper_snake(k)}": v for k, v in outputs.items()}


_EXTRA_MARK = "# set by the caller"


def read_local_env(path: str | os.PathLike[str] | None = None) -> dict[str, str]:
    """Parse ``local.env`` (``export KEY=value`` lines, shell-quoted)."""
    env: dict[str, str] = {}
    p = Path(path or ENV_FILE)
    if not p.exists():
        return env
    for line in p.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        line = line.removeprefix("export ").strip()
        key, _, value = line.partition("=")
        parts = shlex.split(value) if value else [""]
        env[key.strip()] = parts[0] if parts else ""
    return env


def _read_extras(p: Path) -> dict[str, str]:
    if not p.exists():
        return {}
    text = p.read_text()
    if _EXTRA_MARK not in text:
        return {}
    tmp = p.with_suffix(".extra.tmp")
    try:
        tmp.write_text(text.split(_EXTRA_MARK, 1)[1])
        return read_local_env(tmp)
    finally:
        tmp.unlink(missing_ok=True)


def iceberg_env(env: Mapping[str, str]) -> dict[str, str]:
    """Where readers find the Iceberg tables: the SQL catalog (the catalog database, as a
    SQLAlchemy URL) and the API's Iceberg REST catalog."""
    out: dict[str, str] = {}
    url = env.get("DATABASE_URL")
    if url:
        for prefix in ("postgres://", "postgresql://"):
            if url.startswith(prefix):
                url = "postgresql+pg8000://" + url[len(prefix) :]
        out["DATALAKE_ICEBERG_CATALOG_URI"] = url
    if env.get("DATALAKE_API_URL"):
        out["DATALAKE_ICEBERG_REST_URL"] = env["DATALAKE_API_URL"].rstrip("/") + "/api/v1/iceberg"
    return out


def write_local_env(
    extra: Mapping[str, str] | None = None,
    stack_name: str = DEFAULT_STACK,
    path: str | os.PathLike[str] | None = None,
    outputs: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Write ``.datalake/local.env``: AWS settings, stack outputs, and caller-set extras.

    Extras given earlier are kept until overridden (``up`` rewrites the file).
    """
    p = Path(path or ENV_FILE)
    if outputs is None:
        try:
            outputs = stack_outputs(stack_name)
        except StackError:
            outputs = {}
    managed = {**BASE_ENV, **output_env(outputs)}
    extras = {
        k: v
        for k, v in {**_read_extras(p), **(extra or {})}.items()
        if k not in managed or (extra and k in extra)
    }
    for k in extras:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", k):
            raise StackError(f"not an environment variable name: {k!r}")
    managed.update(iceberg_env({**managed, **extras}))
    lines = [
        f"# written by infra/local/stack.py for stack {stack_name}; "
        "`source` it or load it with python-dotenv",
        "# from the local stack",
    ]
    lines += [f"export {k}={shlex.quote(v)}" for k, v in managed.items() if k not in extras]
    lines.append(_EXTRA_MARK)
    lines += [f"export {k}={shlex.quote(str(v))}" for k, v in extras.items()]
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_suffix(".tmp")
    tmp.write_text("\n".join(lines) + "\n")
    tmp.replace(p)
    return {**managed, **extras}


# =============================================================================== up
def up(
    template: str | os.PathLike[str] | None = None,
    stack_name: str = DEFAULT_STACK,
    params: Mapping[str, str] | None = None,
    extra_env: Mapping[str, str] | None = None,
    write_env: bool | None = None,
    deploy_stack: bool = True,
) -> dict[str, str]:
    """Start LocalStack if needed, deploy the template, write local.env. Returns outputs.

    ``write_env`` defaults to True for the default stack only.
    """
    start()
    outputs: dict[str, str] = {}
    if deploy_stack:
        path = Path(template or DEFAULT_TEMPLATE)
        if template is None and not path.exists():
            _say(f"{path} does not exist yet: nothing to deploy")
        else:
            outputs = deploy(path, stack_name, params)
    if write_env is None:
        write_env = stack_name == DEFAULT_STACK
    if write_env:
        write_local_env(extra_env, stack_name, outputs=outputs if deploy_stack else None)
        _say(f"wrote {ENV_FILE}")
    return outputs


# =============================================================================== CLI
def _pairs(items: Iterable[str] | None, what: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"{what} expects KEY=VALUE, got {item!r}")
        out[key] = value
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="stack.py", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)

    def stack_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--template", default=None, help=f"default {DEFAULT_TEMPLATE}")
        p.add_argument("--stack", default=DEFAULT_STACK)
        p.add_argument(
            "--param",
            action="append",
            metavar="KEY=VALUE",
            help="template parameter override (repeatable)",
        )

    p_up = sub.add_parser("up", help="start LocalStack, deploy, write local.env")
    stack_args(p_up)
    p_up.add_argument("--set", action="append", metavar="KEY=VALUE", help="extra env entry")
    p_up.add_argument("--no-deploy", action="store_true")
    p_dep = sub.add_parser("deploy", help="deploy the template (create or update)")
    stack_args(p_dep)
    p_env = sub.add_parser("env", help="write .datalake/local.env")
    p_env.add_argument("--stack", default=DEFAULT_STACK)
    p_env.add_argument("--set", action="append", metavar="KEY=VALUE", help="extra env entry")
    sub.add_parser("down", help="stop LocalStack")
    sub.add_parser("status", help="is it up?")
    p_out = sub.add_parser("outputs", help="print the stack outputs as JSON")
    p_out.add_argument("--stack", default=DEFAULT_STACK)
    args = ap.parse_args(argv)

    try:
        if args.cmd == "up":
            t0 = time.monotonic()
            up(
                args.template,
                args.stack,
                _pairs(args.param, "--param"),
                _pairs(args.set, "--set"),
                write_env=True if args.stack == DEFAULT_STACK else None,
                deploy_stack=not args.no_deploy,
            )
            _say(f"up in {time.monotonic() - t0:.1f}s")
        elif args.cmd == "deploy":
            if not is_up():
                raise StackError("LocalStack is not running: run `stack.py up` first")
            outputs = deploy(args.template, args.stack, _pairs(args.param, "--param"))
            if args.stack == DEFAULT_STACK and ENV_FILE.exists():
                write_local_env(None, args.stack, outputs=outputs)
            print(json.dumps(outputs, indent=2))
        elif args.cmd == "env":
            env = write_local_env(_pairs(args.set, "--set"), args.stack)
            _say(f"wrote {ENV_FILE} ({len(env)} entries)")
        elif args.cmd == "down":
            down()
        elif args.cmd == "status":
            info = status()
            print(json.dumps(info, indent=2))
            return 0 if info["up"] else 3
        elif args.cmd == "outputs":
            print(json.dumps(stack_outputs(args.stack), indent=2))
    except StackError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
