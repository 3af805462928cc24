"""S3 backend (``s3-buffered-lww``, ``s3-buffered-cas``, ``s3-passthrough``).

Keys are object keys in ``STATE_BUCKET``; a key's version is its S3 ETag.
CAS is enforced by S3 itself (``If-Match`` / ``If-None-Match: *`` on
PutObject, CompleteMultipartUpload, DeleteObject and CopyObject), never by a
read-then-write in this process, so it holds across workers and sidecars.
Bodies up to one part go out as a single PutObject; longer or unframed ones
stream through a multipart upload one part at a time and are aborted on any
failure, so the old object survives and no upload is left behind. Works with
any S3-compatible store reachable through ``AWS_ENDPOINT_URL`` (MinIO, moto).
"""
from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError, ConnectTimeoutError, HTTPClientError, ReadTimeoutError
from botocore.exceptions import ConnectionError as BotoConnectionError
from flask import Flask

from sidecars import settings, uploads
from sidecars.app import app_from_env
from sidecars.backend import Backend, ListPage, ObjectBody, ObjectInfo
from sidecars.errors import (
    BackendTimeout,
    BackendUnavailable,
    BadRequest,
    Conflict,
    Forbidden,
    NotFound,
    PayloadTooLarge,
    PreconditionFailed,
    RangeNotSatisfiable,
    SidecarError,
)
from sidecars.per_process import PerProcess
from sidecars.streams import Readable, read_up_to

log = logging.getLogger("vfs_state.sidecar.s3")

PART_SIZE = 8 << 20          # one multipart part; also the largest single PutObject
MAX_PARTS = 10_000           # S3's limit on parts per upload
READ_CHUNK = 1 << 20         # response streaming granularity
COPY_LIMIT = 5 << 30         # CopyObject refuses larger sources
LAST_CHAR = "\U0010ffff"     # sorts after every other character (and UTF-8 byte string)


_XML_UNSAFE = re.compile("[\x01-\x08\x0b\x0c\x0e-\x1f]")


def _quote(version: str) -> str:
    return f'"{version}"'


def _version(etag: str) -> str:
    return etag.strip('"')


def _info(resp: dict[str, Any], size: int | None = None) -> ObjectInfo:
    modified = resp.get("LastModified")
    return ObjectInfo(size=resp["ContentLength"] if size is None else size,
                      version=_version(resp["ETag"]),
                      modified=modified.timestamp() if modified is not None else None,
                      content_type=resp.get("ContentType"))


def _listed_info(item: dict[str, Any]) -> ObjectInfo:
    """A ListObjectsV2 entry's size, ETag and time: what a HEAD gives, minus the type."""
    modified = item.get("LastModified")
    return ObjectInfo(size=int(item.get("Size", 0)), version=_version(item["ETag"]),
                      modified=modified.timestamp() if modified is not None else None)


def translate(exc: ClientError, what: str) -> SidecarError:
    """One S3 error response as the ``SidecarError`` the core answers with."""
    error = exc.response.get("Error", {})
    code = str(error.get("Code", ""))
    status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
    message = f"{what}: {code} {error.get('Message', '')}".strip()
    if code == "NoSuchBucket":
        return BackendUnavailable(message, code="no_such_bucket")
    if code == "NoSuchUpload":
        return Conflict(message, code="upload_aborted")
    if code in ("NoSuchKey", "NotFound") or status == 404:
        return NotFound(message)
    if code in ("PreconditionFailed", "ConditionalRequestConflict", "OperationAborted") \
            or status == 412:
        return PreconditionFailed(message)
    if code == "InvalidRange" or status == 416:
        return RangeNotSatisfiable(int(error.get("ActualObjectSize") or 0), message)
    if code == "EntityTooLarge" or status == 413:
        return PayloadTooLarge(message)
    if code == "AccessDenied" or status == 403:
        return Forbidden(message)
    if code == "RequestTimeout":
        return BackendTimeout(message)
    if status >= 500 or code == "SlowDown":
        return BackendUnavailable(message)
    if status == 409:
        return Conflict(message)
    return BadRequest(message, code="s3_" + (code or str(status)))


@contextmanager
def s3_errors(what: str) -> Iterator[None]:
    """Turn botocore failures (after its own retries) into ``sidecars.errors``."""
    try:
        yield
    except ClientError as exc:
        raise translate(exc, what) from exc
    except (ReadTimeoutError, ConnectTimeoutError) as exc:
        raise BackendTimeout(f"{what}: {exc}") from exc
    except (BotoConnectionError, HTTPClientError) as exc:  # refused, closed, reset, DNS
        raise BackendUnavailable(f"{what}: {exc}") from exc


def _count_retries(parsed: Any = None, model: Any = None, **_: Any) -> None:
    """botocore's ``after-call`` event: report the call's retries to the metrics.

    ``ResponseMetadata.RetryAttempts`` is botocore's public per-call count
    (checked against botocore 1.44; tests/test_metrics.py fails without it).
    """
    meta = parsed.get("ResponseMetadata", {}) if isinstance(parsed, dict) else {}
    attempts = meta.get("RetryAttempts", 0)
    if attempts:
        from sidecars import metrics  # workers only, once the metrics directory exists

        metrics.backend_retried(getattr(model, "name", None) or "other", attempts)


class S3Backend(Backend):
    """Objects in one bucket; the client is made lazily, once per process.

    ``emulator_workarounds`` adds a request where an emulator does not check a
    precondition itself (docs/connectors/s3.md); never needed against S3.
    """

    max_object_size = PART_SIZE * MAX_PARTS

    def __init__(self, bucket: str, region: str = "us-east-1", endpoint_url: str | None = None,
                 connect_timeout: float = 2.0, read_timeout: float = 60.0,
                 max_attempts: int = 3, presign_expiry: int = 3600,
                 request_checksums: str = "when_supported",
                 emulator_workarounds: bool = False) -> None:
        self.bucket = bucket
        self.emulator_workarounds = emulator_workarounds
        self.region = region
        self.endpoint_url = endpoint_url
        self.presign_expiry = presign_expiry
        # Multipart uploads declare the algorithm so S3 keeps a whole-object CRC too.
        self._upload_checksum = {"ChecksumAlgorithm": "CRC32"} \
            if request_checksums == "when_supported" else {}
        self._config = Config(
            region_name=region, connect_timeout=connect_timeout, read_timeout=read_timeout,
            retries={"mode": "standard", "max_attempts": max_attempts},
            max_pool_connections=32,
            # Uploads carry a CRC (boto3's default): S3 verifies every part. Some
            # S3-compatible stores reject these headers: S3_REQUEST_CHECKSUMS.
            request_checksum_calculation=request_checksums,
            response_checksum_validation="when_required",
            s3={"addressing_style": "path"} if endpoint_url else {})
        self._client: PerProcess[Any] = PerProcess(self._new_client)

    @classmethod
    def from_settings(cls, s: settings.S3Settings) -> S3Backend:
        return cls(s.bucket, region=s.region, endpoint_url=s.endpoint_url,
                   request_checksums=s.request_checksums,
                   emulator_workarounds=s.emulator_workarounds)

    def _new_client(self) -> Any:
        session = boto3.session.Session()  # sessions are not thread-safe; one each
        client = session.client("s3", endpoint_url=self.endpoint_url, config=self._config)
        client.meta.events.register("after-call.s3", _count_retries)
        return client

    def _s3(self) -> Any:
        """The boto3 client of this process (thread-safe; never built before a fork)."""
        return self._client.get()

    def _head(self, key: str) -> dict[str, Any] | None:
        try:
            with s3_errors(f"stat {key}"):
                return self._s3().head_object(Bucket=self.bucket, Key=key)
        except NotFound:
            return None

    # -- Backend ------------------------------------------------------------

    def stat(self, key: str) -> ObjectInfo | None:
        head = self._head(key)
        return None if head is None else _info(head)

    def read(self, key: str, start: int = 0, length: int | None = None,
             if_match: str | None = None) -> ObjectBody:
        params: dict[str, Any] = {"Bucket": self.bucket, "Key": key}
        if if_match is not None:
            params["IfMatch"] = _quote(if_match)
        if start or length is not None:
            end = "" if length is None else str(start + length - 1)
            params["Range"] = f"bytes={start}-{end}"
        try:
            with s3_errors(f"read {key}"):
                resp = self._s3().get_object(**params)
        except RangeNotSatisfiable:
            if start:
                raise
            # S3 refuses every range on an empty object, even bytes=0-.
            with s3_errors(f"stat {key}"):
                head = self._s3().head_object(**{k: v for k, v in params.items()
                                                 if k != "Range"})
            if head["ContentLength"]:  # written meanwhile: the range fits now
                with s3_errors(f"read {key}"):
                    resp = self._s3().get_object(**params)
            else:
                return ObjectBody(_info(head), 0, 0, iter(()))
        content_range = resp.get("ContentRange")
        size = int(content_range.rpartition("/")[2]) if content_range else None
        stream = resp["Body"]
        return ObjectBody(_info(resp, size), start, resp["ContentLength"],
                          stream.iter_chunks(READ_CHUNK), stream.close)

    def write(self, key: str, body: Readable, length: int | None,
              if_match: str | None = None, if_none_match: bool = False) -> ObjectInfo:
        conditions: dict[str, str] = {}
        if if_match is not None:
            conditions["IfMatch"] = _quote(if_match)
        elif if_none_match:
            conditions["IfNoneMatch"] = "*"
        first = read_up_to(body, PART_SIZE)
        tail = body.read(1) if len(first) == PART_SIZE else b""
        try:
            if not tail:
                with s3_errors(f"write {key}"):
                    resp = self._s3().put_object(Bucket=self.bucket, Key=key, Body=first,
                                                 **conditions)
                return ObjectInfo(size=len(first), version=_version(resp["ETag"]))
            return self._write_multipart(key, body, first, tail, conditions)
        except NotFound as exc:
            if if_match is None:
                raise
            raise PreconditionFailed(f"write {key}: the observed object is gone") from exc

    def _write_multipart(self, key: str, body: Readable, first: bytearray, tail: bytes,
                         conditions: dict[str, str]) -> ObjectInfo:
        """Stream ``body`` part by part; abort on any failure, even a bad body."""
        s3 = self._s3()
        with s3_errors(f"start upload of {key}"):
            upload_id = s3.create_multipart_upload(Bucket=self.bucket, Key=key,
                                                   **self._upload_checksum)["UploadId"]
        with uploads.tracked(lambda: self._abort(key, upload_id)):
            return self._send_parts(s3, key, upload_id, body, first, tail, conditions)

    def _send_parts(self, s3: Any, key: str, upload_id: str, body: Readable, first: bytearray,
                    tail: bytes, conditions: dict[str, str]) -> ObjectInfo:
        try:
            parts: list[dict[str, Any]] = []
            size, part = 0, first
            while part:
                if len(parts) == MAX_PARTS:
                    raise PayloadTooLarge(f"more than {MAX_PARTS} parts of {PART_SIZE} bytes")
                number = len(parts) + 1
                with s3_errors(f"upload part {number} of {key}"):
                    sent = s3.upload_part(Bucket=self.bucket, Key=key, UploadId=upload_id,
                                          PartNumber=number, Body=part, **self._upload_checksum)
                parts.append({"ETag": sent["ETag"], "PartNumber": number,
                              **({"ChecksumCRC32": sent["ChecksumCRC32"]}
                                 if "ChecksumCRC32" in sent else {})})
                size += len(part)
                _release(part)  # the caller's frame still references the first part
                part = read_up_to(body, PART_SIZE, tail if number == 1 else b"")
            if "IfMatch" in conditions and self.emulator_workarounds:
                self._guard_if_match(key, _version(conditions["IfMatch"]))
            with s3_errors(f"complete upload of {key}"):
                resp = s3.complete_multipart_upload(
                    Bucket=self.bucket, Key=key, UploadId=upload_id,
                    MultipartUpload={"Parts": parts}, **conditions)
        except BaseException:
            self._abort(key, upload_id)
            raise
        return ObjectInfo(size=size, version=_version(resp["ETag"]))

    def _guard_if_match(self, key: str, version: str) -> None:
        """For emulators only: check ``IfMatch`` before completing an upload.

        S3 checks ``IfMatch`` on CompleteMultipartUpload atomically itself;
        moto 5.2 ignores it. Against such an emulator this narrows, but cannot
        close, the window (``S3_EMULATOR_WORKAROUNDS``).
        """
        current = self._head(key)
        if current is None or _version(current["ETag"]) != version:
            raise PreconditionFailed(f"write {key}: stored version differs from If-Match")

    def _abort(self, key: str, upload_id: str) -> None:
        try:
            with s3_errors(f"abort upload of {key}"):
                self._s3().abort_multipart_upload(Bucket=self.bucket, Key=key,
                                                  UploadId=upload_id)
        except SidecarError as exc:  # the original failure matters more
            log.warning("could not abort upload %s of %s: %s", upload_id, key, exc)

    def delete(self, key: str, if_match: str | None = None) -> None:
        if key.endswith("/"):
            return self._delete_marker(key)
        params: dict[str, Any] = {"Bucket": self.bucket, "Key": key}
        if if_match is not None:
            params["IfMatch"] = _quote(if_match)  # S3 answers 404 itself when absent
        elif self._head(key) is None:  # S3 deletes absent keys "successfully"
            raise NotFound(f"no such key: {key}")
        with s3_errors(f"delete {key}"):
            self._s3().delete_object(**params)

    def _delete_marker(self, key: str) -> None:
        """Like ``rmdir``: only an empty directory's marker may go."""
        page = self.list_page(key, None, None, 2)
        if any(k != key for k in page.keys):
            raise Conflict(f"directory {key!r} is not empty", code="directory_not_empty")
        if key not in page.keys:
            raise NotFound(f"no such directory: {key}")
        with s3_errors(f"delete {key}"):
            self._s3().delete_object(Bucket=self.bucket, Key=key)

    def list_page(self, prefix: str, delimiter: str | None, start_after: str | None,
             max_keys: int) -> ListPage:
        for text in (prefix, start_after or ""):
            if _XML_UNSAFE.search(text):
                # The listing reply is XML 1.0, which cannot carry these characters.
                raise BadRequest("listing prefix or cursor holds a control character",
                                 code="bad_key")
        params: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix, "MaxKeys": max_keys}
        if delimiter:
            params["Delimiter"] = delimiter
        if start_after:
            # A rolled-up prefix as cursor: skip its whole subtree, not just its name.
            subtree = bool(delimiter and start_after.endswith(delimiter))
            params["StartAfter"] = start_after + LAST_CHAR if subtree else start_after
        while True:
            with s3_errors(f"list {prefix!r}"):
                resp = self._s3().list_objects_v2(**params)
            contents = resp.get("Contents", [])
            keys = [item["Key"] for item in contents]
            prefixes = [item["Prefix"] for item in resp.get("CommonPrefixes", [])]
            truncated = bool(resp.get("IsTruncated"))
            if keys or prefixes or not truncated:
                break
            params["ContinuationToken"] = resp["NextContinuationToken"]  # empty page
        last = max(keys[-1:] + prefixes[-1:]) if truncated else None
        infos = {item["Key"]: _listed_info(item) for item in contents
                 if not item["Key"].endswith("/")}
        return ListPage(keys=keys, prefixes=prefixes, next=last, infos=infos)

    def get_attrs(self, key: str) -> dict[str, str]:
        head = self._head(key)
        if head is None:
            raise NotFound(f"no such key: {key}")
        url = self._s3().generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": key},
            ExpiresIn=self.presign_expiry)
        return {"url": f"s3://{self.bucket}/{key}", "presigned_url": url,
                "etag": head["ETag"], "content_type": head.get("ContentType", ""),
                "version": head.get("VersionId") or "null",
                "storage_class": head.get("StorageClass", "STANDARD"),
                "size": str(head["ContentLength"])}

    def set_attr(self, key: str, name: str, value: str) -> None:
        if name != "content_type":
            raise Forbidden(f"attribute {name!r} is not writable on S3 (only content_type)")
        head = self._head(key)
        if head is None:
            raise NotFound(f"no such key: {key}")
        if head["ContentLength"] > COPY_LIMIT:
            raise PayloadTooLarge(f"content_type of objects over {COPY_LIMIT} bytes is fixed")
        source: dict[str, str] = {"Bucket": self.bucket, "Key": key}
        if head.get("VersionId") not in (None, "null"):
            source["VersionId"] = head["VersionId"]
        params: dict[str, Any] = {
            "Bucket": self.bucket, "Key": key, "CopySource": source,
            "MetadataDirective": "REPLACE", "ContentType": value,
            "Metadata": head.get("Metadata", {}),
            # Copy the bytes we looked at onto the object we looked at, or fail:
            # a concurrent writer's object is never replaced by the old bytes.
            "CopySourceIfMatch": head["ETag"], "IfMatch": head["ETag"]}
        for field in ("CacheControl", "ContentDisposition", "ContentEncoding",
                      "ContentLanguage", "StorageClass"):
            if head.get(field):
                params[field] = head[field]
        with s3_errors(f"set content_type of {key}"):
            self._s3().copy_object(**params)

    def ping(self) -> None:
        try:
            with s3_errors(f"bucket {self.bucket}"):
                self._s3().head_bucket(Bucket=self.bucket)
        except (BackendTimeout, BackendUnavailable):
            raise
        except SidecarError as exc:  # a missing or forbidden bucket: not ready either
            raise BackendUnavailable(exc.message) from exc

    def close(self) -> None:
        for client in self._client.pop_all():
            client.close()


def _release(part: bytearray) -> None:
    """Free a sent part's memory now, so at most one part is held at a time."""
    try:
        part.clear()
    except BufferError:  # still exported (a view is alive): let it go with its references
        pass


def create_app(consistency: str | None = None) -> Flask:
    """WSGI factory: ``gunicorn 'sidecars.s3:create_app()'``."""
    return app_from_env(S3Backend.from_settings(settings.s3()), consistency, "vfs-state-s3")
