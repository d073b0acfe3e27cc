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

from datalake.errors import NotFound, SourceChanged


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

    def get_range(self, bucket: str, key: str, start: int, end: int | None, *,
                  etag: str | None = None) -> bytes:
        """Bytes ``[start, end)`` of an object (``end=None``: to the end).

        With ``etag`` the read is conditional: :class:`~datalake.errors.SourceChanged`
        when the object is no longer that version.
        """
        ...

    def open_input(self, bucket: str, key: str, *, size: int | None = None,
                   etag: str | None = None) -> BinaryIO:
        """A seekable, streaming, read-only file object over the object.

        ``size`` is the object's size when the caller knows it (a listing's or a plan's;
        an implementation may use it instead of asking again). With ``etag`` every read
        is conditional on that version. Either differing from the object raises
        :class:`~datalake.errors.SourceChanged`.
        """
        ...

    def put_file(self, bucket: str, key: str, path: str) -> None: ...

    def put_bytes(self, bucket: str, key: str, data: bytes | Any) -> None: ...

    def delete(self, bucket: str, keys: builtins.list[str]) -> None: ...


class LocalObjectStore:
    """Buckets are subdirectories of ``root``; keys are relative paths.

    The ETag is derived from size, mtime and inode (cheap, changes whenever the file is
    rewritten), not from the content. A read given an ETag or size checks them on the
    file it opened: an open file keeps reading the version it checked, as a conditional
    S3 GET does, even if the object is replaced meanwhile.
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

    def _open_checked(self, bucket: str, key: str, size: int | None,
                      etag: str | None) -> BinaryIO:
        try:
            f = open(self._path(bucket, key), "rb")  # noqa: SIM115 - the caller closes it
        except FileNotFoundError as e:
            raise NotFound(f"s3://{bucket}/{key} does not exist") from e
        st = os.fstat(f.fileno())
        found = self._etag(st)
        if (etag and etag.strip('"') != found) or (size is not None and size != st.st_size):
            f.close()
            raise SourceChanged(
                f"s3://{bucket}/{key} is no longer the version expected (size {size}, etag "
                f"{etag!r}; found size {st.st_size}, etag {found!r})"
            )
        return f

    def get_range(self, bucket: str, key: str, start: int, end: int | None, *,
                  etag: str | None = None) -> bytes:
        with self._open_checked(bucket, key, None, etag) as f:
            f.seek(start)
            return f.read() if end is None else f.read(max(0, end - start))

    def open_input(self, bucket: str, key: str, *, size: int | None = None,
                   etag: str | None = None) -> BinaryIO:
        return self._open_checked(bucket, key, size, etag)

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
