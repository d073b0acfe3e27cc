"""S3 implementation of :class:`datalake.engine.store.ObjectStore` (boto3).

The client is injectable (tests pass a moto-backed one); by default it is created with
boto3's standard resolution, so ``AWS_ENDPOINT_URL`` (LocalStack) works unchanged.
"""

from __future__ import annotations

import builtins
import contextlib
import io
from typing import Any, BinaryIO

from datalake.engine.store import ObjectInfo
from datalake.errors import NotFound, ObjectsNotDeleted, SourceChanged

_MISSING = {"404", "NoSuchKey", "NotFound", "NoSuchBucket"}
_CHANGED = {"412", "PreconditionFailed"}


def _code(err: Exception) -> str:
    resp = getattr(err, "response", None) or {}
    return str(resp.get("Error", {}).get("Code", ""))


def _translate(err: Exception, bucket: str, key: str) -> Exception:
    code = _code(err)
    if code in _MISSING:
        return NotFound(f"s3://{bucket}/{key} does not exist")
    if code in _CHANGED:
        return SourceChanged(f"s3://{bucket}/{key} changed while it was being read")
    return err


class S3RangeReader(io.RawIOBase):
    """A seekable read-only file over one S3 object.

    Sequential reads stream from one open-ended ranged GET; a seek elsewhere opens a new
    GET at the new position. With ``etag`` every GET carries ``If-Match``, so an object
    replaced mid-read raises :class:`SourceChanged` instead of mixing two versions.
    """

    def __init__(self, client: Any, bucket: str, key: str, size: int | None = None,
                 etag: str | None = None) -> None:
        super().__init__()
        self._client, self._bucket, self._key, self._etag = client, bucket, key, etag
        self._body: Any = None
        self._body_pos = -1
        self._pos = 0
        if size is None:
            try:
                h = client.head_object(Bucket=bucket, Key=key)
            except Exception as e:  # botocore ClientError
                raise _translate(e, bucket, key) from e
            size = int(h["ContentLength"])
        self._size = size

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_SET:
            self._pos = offset
        elif whence == io.SEEK_CUR:
            self._pos += offset
        else:
            self._pos = self._size + offset
        self._pos = max(0, self._pos)
        return self._pos

    def _open(self) -> None:
        self._close_body()
        kwargs: dict[str, Any] = {"Bucket": self._bucket, "Key": self._key,
                                  "Range": f"bytes={self._pos}-"}
        if self._etag:
            kwargs["IfMatch"] = self._etag
        try:
            self._body = self._client.get_object(**kwargs)["Body"]
        except Exception as e:
            raise _translate(e, self._bucket, self._key) from e
        self._body_pos = self._pos

    def _close_body(self) -> None:
        if self._body is not None:
            with contextlib.suppress(Exception):
                self._body.close()
        self._body = None

    def readinto(self, b: Any) -> int:
        n = len(b)
        if n == 0 or self._pos >= self._size:
            return 0
        if self._body is None or self._body_pos != self._pos:
            self._open()
        data = self._body.read(min(n, self._size - self._pos))
        b[: len(data)] = data
        self._pos += len(data)
        self._body_pos = self._pos
        return len(data)

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            size = self._size - self._pos
        if size <= 0 or self._pos >= self._size:
            return b""
        if self._body is None or self._body_pos != self._pos:
            self._open()
        chunks = []
        want = min(size, self._size - self._pos)
        while want > 0:
            data = self._body.read(want)
            if not data:
                break
            chunks.append(data)
            want -= len(data)
            self._pos += len(data)
        self._body_pos = self._pos
        return b"".join(chunks)

    def close(self) -> None:
        self._close_body()
        super().close()


class S3ObjectStore:
    """:class:`~datalake.engine.store.ObjectStore` over boto3's S3 client."""

    def __init__(self, client: Any = None, *, multipart_threshold: int = 64 * 2**20) -> None:
        if client is None:
            # The per-process cached client: building a boto3 client costs tens of ms,
            # which every handler invocation would otherwise pay again.
            from datalake.aws.clients import client as cached_client

            client = cached_client("s3")
        self.client = client
        self.multipart_threshold = multipart_threshold

    def head(self, bucket: str, key: str) -> ObjectInfo:
        try:
            h = self.client.head_object(Bucket=bucket, Key=key)
        except Exception as e:
            raise _translate(e, bucket, key) from e
        return ObjectInfo(bucket, key, int(h["ContentLength"]), str(h.get("ETag", "")).strip('"'))

    def list(self, bucket: str, prefix: str) -> list[ObjectInfo]:
        out: list[ObjectInfo] = []
        paginator = self.client.get_paginator("list_objects_v2")
        try:
            for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
                for obj in page.get("Contents", []) or []:
                    out.append(ObjectInfo(bucket, obj["Key"], int(obj["Size"]),
                                          str(obj.get("ETag", "")).strip('"')))
        except Exception as e:
            raise _translate(e, bucket, prefix) from e
        out.sort(key=lambda o: o.key)
        return out

    def get_range(self, bucket: str, key: str, start: int, end: int | None,
                  *, etag: str | None = None) -> bytes:
        if end is not None and end <= start:
            return b""
        rng = f"bytes={start}-" if end is None else f"bytes={start}-{end - 1}"
        kwargs: dict[str, Any] = {"Bucket": bucket, "Key": key, "Range": rng}
        if etag:
            kwargs["IfMatch"] = etag
        try:
            resp = self.client.get_object(**kwargs)
        except Exception as e:
            if _code(e) in {"InvalidRange", "416"}:
                return b""
            raise _translate(e, bucket, key) from e
        return resp["Body"].read()

    def open_input(self, bucket: str, key: str, *, size: int | None = None,
                   etag: str | None = None) -> BinaryIO:
        return io.BufferedReader(S3RangeReader(self.client, bucket, key, size, etag),
                                 buffer_size=4 * 2**20)

    def put_file(self, bucket: str, key: str, path: str) -> None:
        from boto3.s3.transfer import TransferConfig

        cfg = TransferConfig(multipart_threshold=self.multipart_threshold)
        self.client.upload_file(path, bucket, key, Config=cfg)

    def put_bytes(self, bucket: str, key: str, data: bytes | Any) -> None:
        body = data if isinstance(data, bytes) else memoryview(data).tobytes()
        self.client.put_object(Bucket=bucket, Key=key, Body=body)

    def delete(self, bucket: str, keys: builtins.list[str]) -> None:
        """Delete ``keys`` (a missing key is no error), 1,000 per request.

        Raises
        ------
        ObjectsNotDeleted
            When S3 refused some keys: ``DeleteObjects`` answers 200 and lists them under
            ``Errors``, so they are raised here instead of left behind unseen. Every chunk
            is attempted first.
        """
        failed: builtins.list[dict[str, str]] = []
        for i in range(0, len(keys), 1000):
            chunk = keys[i : i + 1000]
            if chunk:
                resp = self.client.delete_objects(
                    Bucket=bucket,
                    Delete={"Objects": [{"Key": k} for k in chunk], "Quiet": True},
                )
                failed += [
                    {"key": str(e.get("Key")), "code": str(e.get("Code")),
                     "message": str(e.get("Message", ""))}
                    for e in resp.get("Errors") or []
                ]
        if failed:
            first = failed[0]
            raise ObjectsNotDeleted(
                f"{len(failed)} object(s) of s3://{bucket} not deleted, e.g. {first['key']}: "
                f"{first['code']} {first['message']}".rstrip(),
                details=failed,
            )
