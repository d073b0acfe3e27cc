"""Object storage behind one small interface: S3 in production, a directory in tests.

The engine only ever talks to an :class:`ObjectStore`; :class:`LocalObjectStore` maps
buckets to subdirectories of a root folder (tests, benchmarks, the embedded mode) and
``datalake.aws.s3.S3ObjectStore`` is the S3 implementation.
"""

from __future__ import annotations

import builtins
import contextlib
import hashlib
import io
import os
import shutil
import threading
from dataclasses import dataclass
from typing import Any, BinaryIO, Protocol, runtime_checkable

from datalake.errors import NotFound


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    """What a HEAD/LIST returns about one object."""

    bucket: str
    key: str
    size: int
    etag: str

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


@runtime_checkable
class ObjectStore(Protocol):
    """The storage operations the engine needs."""

    def head(self, bucket: str, key: str) -> ObjectInfo: ...

    def list(self, bucket: str, prefix: str) -> list[ObjectInfo]: ...

    def get_range(self, bucket: str, key: str, start: int, end: int | None) -> bytes:
        """Bytes ``[start, end)`` of an object (``end=None``: to the end)."""
        ...

    def open_input(self, bucket: str, key: str) -> BinaryIO:
        """A seekable, streaming, read-only file object over the object."""
        ...

    def put_file(self, bucket: str, key: str, path: str) -> None: ...

    def put_bytes(self, bucket: str, key: str, data: bytes | Any) -> None: ...

    def delete(self, bucket: str, keys: builtins.list[str]) -> None: ...


class LocalObjectStore:
    """Buckets are subdirectories of ``root``; keys are relative paths.

    The ETag is derived from size, mtime and inode (cheap, changes whenever the file is
    rewritten), not from the content.
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = os.fspath(root)
        self._dirs: set[str] = set()

    def _path(self, bucket: str, key: str) -> str:
        if not bucket or "/" in bucket or bucket in (".", ".."):
            raise ValueError(f"invalid bucket name {bucket!r}")
        parts = [p for p in key.split("/") if p]
        if any(p in (".", "..") for p in parts) or not parts:
            raise ValueError(f"invalid key {key!r}")
        return os.path.join(self.root, bucket, *parts)

    @staticmethod
    def _etag(st: os.stat_result) -> str:
        raw = f"{st.st_size}:{st.st_mtime_ns}:{st.st_ino}".encode()
        return hashlib.md5(raw).hexdigest()

    def head(self, bucket: str, key: str) -> ObjectInfo:
        path = self._path(bucket, key)
        try:
            st = os.stat(path)
        except FileNotFoundError as e:
            raise NotFound(f"s3://{bucket}/{key} does not exist") from e
        return ObjectInfo(bucket, key, st.st_size, self._etag(st))

    def list(self, bucket: str, prefix: str) -> list[ObjectInfo]:
        base = os.path.join(self.root, bucket)
        out: list[ObjectInfo] = []
        for dirpath, _dirs, files in os.walk(base):
            for name in files:
                full = os.path.join(dirpath, name)
                key = os.path.relpath(full, base).replace(os.sep, "/")
                if key.startswith(prefix) and not name.startswith(".tmp-"):
                    st = os.stat(full)
                    out.append(ObjectInfo(bucket, key, st.st_size, self._etag(st)))
        out.sort(key=lambda o: o.key)
        return out

    def get_range(self, bucket: str, key: str, start: int, end: int | None) -> bytes:
        path = self._path(bucket, key)
        try:
            with open(path, "rb") as f:
                f.seek(start)
                return f.read() if end is None else f.read(max(0, end - start))
        except FileNotFoundError as e:
            raise NotFound(f"s3://{bucket}/{key} does not exist") from e

    def open_input(self, bucket: str, key: str) -> BinaryIO:
        try:
            return open(self._path(bucket, key), "rb")
        except FileNotFoundError as e:
            raise NotFound(f"s3://{bucket}/{key} does not exist") from e

    def _atomic_write(self, bucket: str, key: str, writer: Any) -> None:
        path = self._path(bucket, key)
        d, name = os.path.split(path)
        if d not in self._dirs:
            os.makedirs(d, exist_ok=True)
            self._dirs.add(d)
        tmp = os.path.join(d, f".tmp-{name}-{os.getpid()}-{threading.get_ident()}")
        try:
            f = open(tmp, "wb")  # noqa: SIM115
        except FileNotFoundError:  # removed behind our back
            os.makedirs(d, exist_ok=True)
            f = open(tmp, "wb")  # noqa: SIM115
        try:
            with f:
                writer(f)
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise

    def put_file(self, bucket: str, key: str, path: str) -> None:
        def copy(f: io.BufferedWriter) -> None:
            with open(path, "rb") as src:
                shutil.copyfileobj(src, f, 8 * 2**20)

        self._atomic_write(bucket, key, copy)

    def put_bytes(self, bucket: str, key: str, data: bytes | Any) -> None:
        self._atomic_write(bucket, key, lambda f: f.write(data))

    def delete(self, bucket: str, keys: builtins.list[str]) -> None:
        for key in keys:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._path(bucket, key))
