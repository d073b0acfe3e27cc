"""Packaging a SAM template for LocalStack, as ``sam package`` would: every local
``CodeUri``/``ContentUri``/``DefinitionUri`` zipped (deterministically) or read, uploaded
to the deploy bucket, and replaced by its S3 location. The project's template is packaged
from ``sam build``'s output (layers with their dependencies installed and trimmed)."""

from __future__ import annotations

import copy
import hashlib
import io
import json
import os
import re
import sys
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeGuard

from dl_stack.aws import client
from dl_stack.report import StackError
from dl_stack.settings import DEPLOY_BUCKET, HERE
from dl_stack.template import load_doc

ZIP_EXCLUDE_DIRS = frozenset(
    {
        "__pycache__",
        ".pytest_cache",
        ".mypy_cache",
        ".ruff_cache",
        ".git",
        ".aws-sam",
        ".venv",
        "node_modules",
    }
)
ZIP_EXCLUDE_SUFFIXES = (".pyc", ".pyo", ".DS_Store")


def source_files(
    src: Path, skip_dirs: frozenset[str] = ZIP_EXCLUDE_DIRS, *, bytecode: bool = False
) -> list[Path]:
    """The files under ``src`` worth shipping, sorted: no caches, bytecode or egg-info.

    Parameters
    ----------
    src:
        The folder to walk.
    skip_dirs:
        Folder names whose contents are left out, at any depth.
    bytecode:
        Keep ``__pycache__`` bytecode (a ``sam build`` output compiled it for Lambda).
    """
    if bytecode:
        skip_dirs = skip_dirs - {"__pycache__"}
    suffixes = (".DS_Store",) if bytecode else ZIP_EXCLUDE_SUFFIXES
    return sorted(
        p
        for p in src.rglob("*")
        if p.is_file()
        and not (set(p.relative_to(src).parts[:-1]) & skip_dirs)
        and not p.name.endswith(suffixes)
        and not any(part.endswith(".egg-info") for part in p.relative_to(src).parts)
    )


def _zip_dir(src: Path, prefix: str = "", *, bytecode: bool = False) -> bytes:
    """A deterministic zip of ``src`` (fixed timestamps, sorted entries)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for p in source_files(src, bytecode=bytecode):
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
    # What AWS gets: the build's bytecode too (hash-based, so the zip's fixed timestamps
    # do not invalidate it).
    data = _zip_dir(src, prefix, bytecode=True)
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(".tmp")
    tmp.write_bytes(data)
    tmp.replace(cache)
    return data


class Uploader:
    """Puts packaged artifacts into the deploy bucket under the stack's prefix, named by
    their content hash (an unchanged artifact is not uploaded again)."""

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
        """Upload ``data`` (unless there) as ``<stack>/<name>-<hash><ext>``; its key."""
        self._ensure_bucket()
        key = f"{self.prefix}/{name}-{hashlib.sha256(data).hexdigest()[:24]}{ext}"
        try:
            self.s3.head_object(Bucket=self.bucket, Key=key)
        except Exception:
            self.s3.put_object(Bucket=self.bucket, Key=key, Body=data)
        return key


def _is_local(uri: Any) -> TypeGuard[str]:
    return isinstance(uri, str) and not re.match(r"^[a-z0-9]+://", uri)


def package_template(
    template: Mapping[str, Any], base_dir: Path, uploader: Uploader
) -> dict[str, Any]:
    """What ``sam build`` + ``sam package`` do, minus dependency installation.

    Parameters
    ----------
    template:
        The template as data (left unchanged; a packaged copy is returned).
    base_dir:
        The folder its local paths are relative to.
    uploader:
        Where the artifacts go.
    """
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
                asl = json.dumps(load_doc(code_dir(uri)), indent=1).encode()
                props["DefinitionUri"] = {
                    "Bucket": uploader.bucket,
                    "Key": uploader.put(name, asl, ".asl.json"),
                }
        elif typ in ("AWS::Serverless::Api", "AWS::Serverless::HttpApi"):
            uri = props.get("DefinitionUri")
            if _is_local(uri):
                props["DefinitionBody"] = load_doc(code_dir(uri))
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
