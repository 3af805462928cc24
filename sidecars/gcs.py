"""Google Cloud Storage backend (``gcs-buffered-lww``, ``gcs-buffered-cas``).

The version is the object's generation, so CAS is GCS's own precondition:
``ifGenerationMatch=<generation>``, or ``=0`` for create-only. A read is one
streaming ``alt=media`` request whose headers carry generation and size (one
round trip; all bytes from the generation reported). Bodies up to ``CHUNK``
are one multipart upload; longer or chunked ones stream through a resumable
session, one part in memory, cancelled if the request body breaks so the old
object stays. Every call has a timeout and a bounded retry deadline.

Raw media requests go through a ``google.auth`` ``AuthorizedSession`` of our
own, built from the same credentials as the client, so no private part of
``google-cloud-storage`` is used. fake-gcs-server ignores preconditions on
deletes and resumable uploads and finalizes a session asked for its status:
only with ``GCS_EMULATOR_WORKAROUNDS`` set are those preconditions checked
here first (racy) and parts not resumed (docs/connectors/gcs.md).
"""
from __future__ import annotations

import io
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any

import requests
from flask import Flask
from google.api_core import exceptions as gexc
from google.api_core.page_iterator import HTTPIterator
from google.auth import exceptions as auth_exc
from google.auth.credentials import AnonymousCredentials, Credentials, Signing
from google.auth.transport.requests import AuthorizedSession
from google.cloud import storage
from google.cloud.storage.retry import DEFAULT_RETRY

from sidecars import settings, uploads
from sidecars.app import app_from_env
from sidecars.backend import Backend, ListPage, ObjectBody, ObjectInfo, served_length
from sidecars.errors import (
    BackendTimeout,
    BackendUnavailable,
    BadRequest,
    Conflict,
    Forbidden,
    NotFound,
    PreconditionFailed,
    RangeNotSatisfiable,
    SidecarError,
)
from sidecars.http_environment import settle
from sidecars.per_process import PerProcess
from sidecars.streams import Readable, read_up_to

CHUNK = 8 << 20          # upload part; resumable parts must be multiples of 256 KiB
READ_CHUNK = 1 << 20     # bytes per yield when streaming a download
CONNECT_TIMEOUT = 3.0
GCS_ENDPOINT = "https://storage.googleapis.com"  # the library's default API endpoint
OCTET = "application/octet-stream"
SIGNED_URL_TTL = timedelta(hours=1)
LIST_FIELDS = "items(name,size,generation,updated),prefixes,nextPageToken"
SCOPES = ["https://www.googleapis.com/auth/devstorage.read_write"]


def _generation(version: str) -> int:
    """A client's version as a generation; anything else can never match.

    Generation 0 is GCS's "must not exist" condition, never a stored version:
    as an If-Match it would turn a CAS write into a create.
    """
    if not (version.isascii() and version.isdigit()) or int(version) == 0:
        raise PreconditionFailed(f"version {version!r} is not a GCS generation")
    return int(version)


#: what ``get_blob`` asks for: the resource without its access lists
_NO_ACL = {"projection": "noAcl"}


def _blob_info(blob: storage.Blob) -> ObjectInfo:
    return ObjectInfo(size=int(blob.size or 0), version=str(blob.generation),
                      modified=blob.updated.timestamp() if blob.updated else None,
                      content_type=blob.content_type)


def _resource_info(resource: dict[str, Any]) -> ObjectInfo:
    updated = resource.get("updated")
    modified = datetime.fromisoformat(updated.replace("Z", "+00:00")) if updated else None
    return ObjectInfo(size=int(resource.get("size", 0)), version=str(resource["generation"]),
                      modified=modified.timestamp() if modified else None,
                      content_type=resource.get("contentType"))


def _translate(exc: BaseException, key: str) -> SidecarError | None:
    """The sidecar error for a client exception; None lets it through as a 500."""
    if isinstance(exc, SidecarError):
        return exc
    if isinstance(exc, gexc.RetryError):  # the deadline ran out: report the last failure
        cause = _translate(exc.cause, key) if exc.cause is not None else None
        return cause or BackendUnavailable(f"GCS retries exhausted: {exc.message}")
    if isinstance(exc, auth_exc.TransportError) and exc.args and isinstance(exc.args[0], Exception):
        return _translate(exc.args[0], key)
    if isinstance(exc, gexc.NotFound):
        return NotFound(f"no such key: {key}")
    if isinstance(exc, (gexc.Forbidden, gexc.Unauthorized, auth_exc.RefreshError)):
        return Forbidden(f"GCS refused access to {key!r}: {exc}")
    if isinstance(exc, gexc.PreconditionFailed):
        return PreconditionFailed("stored generation differs from the precondition")
    if isinstance(exc, gexc.BadRequest):
        return BadRequest(f"GCS rejected the request for {key!r}: {exc}")
    if isinstance(exc, gexc.Conflict):
        return Conflict(f"GCS conflict on {key!r}: {exc}")
    if isinstance(exc, gexc.GatewayTimeout):
        return BackendTimeout(f"GCS timed out: {exc}")
    if isinstance(exc, gexc.GoogleAPICallError):  # 429 and 5xx once retries ran out
        return BackendUnavailable(f"GCS error: {exc}")
    if isinstance(exc, (requests.Timeout, TimeoutError)):
        return BackendTimeout(f"GCS did not answer in time: {exc}")
    if isinstance(exc, (requests.RequestException, ConnectionError, auth_exc.TransportError)):
        return BackendUnavailable(f"cannot reach GCS: {exc}")
    return None


@dataclass(frozen=True)
class _Clients:
    """One thread's clients: the library's for metadata, a session for raw media requests."""

    storage: storage.Client
    http: AuthorizedSession


class GcsBackend(Backend):
    """Objects in one bucket; store keys are object names."""

    max_object_size = 5 << 40  # GCS's own limit (5 TiB)

    def __init__(self, bucket: str, project: str | None = None, emulator_host: str | None = None,
                 timeout: float = 10.0, retry_deadline: float = 5.0,
                 emulator_workarounds: bool = False) -> None:
        if emulator_host and "://" not in emulator_host:
            emulator_host = "http://" + emulator_host
        self.bucket_name = bucket
        self.project = project
        self.emulator_host = emulator_host
        #: fake-gcs-server: check ignored preconditions first, never resume a part
        self.emulator_workarounds = emulator_workarounds
        self.timeout = (min(CONNECT_TIMEOUT, timeout), timeout)
        self.retry = DEFAULT_RETRY.with_delay(initial=0.2, maximum=2.0).with_timeout(retry_deadline)
        self._clients = PerProcess(self._new_clients, per_thread=True)
        self._lock = threading.Lock()
        self._credentials: Credentials | None = None

    @classmethod
    def from_settings(cls, s: settings.GcsSettings) -> GcsBackend:
        return cls(s.bucket, project=s.project, emulator_host=s.emulator_host,
                   timeout=s.timeout, retry_deadline=s.retry_deadline,
                   emulator_workarounds=s.emulator_workarounds)

    # -- clients: one per thread (requests sessions are not thread-safe) ------

    def _client(self) -> storage.Client:
        return self._clients.get().storage

    def _http(self) -> AuthorizedSession:
        return self._clients.get().http

    def _new_clients(self) -> _Clients:
        """The library's client on our session, whose environment is read once (``settle``)."""
        credentials: Credentials
        credentials = AnonymousCredentials() if self.emulator_host else self._default_credentials()
        http = AuthorizedSession(credentials)
        http.configure_mtls_channel()  # as the library's own session: only if configured
        settle(http, self.emulator_host or GCS_ENDPOINT)
        if self.emulator_host:
            client = storage.Client(project=self.project or "local", credentials=credentials,
                                    _http=http,
                                    client_options={"api_endpoint": self.emulator_host})
        else:
            client = storage.Client(project=self.project, credentials=credentials, _http=http)
        return _Clients(client, http)

    def _default_credentials(self) -> Credentials:
        """Application default credentials, resolved once (it may hit the metadata server)."""
        with self._lock:
            if self._credentials is None:
                import google.auth

                try:
                    self._credentials, _ = google.auth.default(scopes=SCOPES)
                except auth_exc.DefaultCredentialsError as exc:
                    raise Forbidden(f"no GCS credentials: {exc}") from None
            return self._credentials

    def _bucket(self) -> storage.Bucket:
        return self._client().bucket(self.bucket_name)

    @contextmanager
    def _errors(self, key: str) -> Iterator[None]:
        try:
            yield
        except Exception as exc:
            mapped = _translate(exc, key)
            if mapped is None or mapped is exc:
                raise
            raise mapped from exc

    # -- reads ----------------------------------------------------------------

    def stat(self, key: str) -> ObjectInfo | None:
        """One JSON API ``GET`` of the object's resource on our session.

        ``Bucket.get_blob`` sends the same request, but its wrapping (a
        ``Blob``, the library's request builder and retry plumbing) costs
        about 0.45 ms of CPU more per call on the benchmark machine, a fifth
        of a stat against fake-gcs-server (docs/performance.md).
        """
        http = self._http()
        url = f"{self._client().api_endpoint}/storage/v1{self._object_path(key)}"

        def attempt() -> ObjectInfo | None:
            response = http.get(url, params=_NO_ACL, timeout=self.timeout)
            if response.status_code == 404:
                return None
            if response.status_code >= 400:
                raise gexc.from_http_response(response)
            return _resource_info(response.json())

        with self._errors(key):
            return self.retry(attempt)()

    def _object_path(self, key: str) -> str:
        """``/b/BUCKET/o/QUOTED-NAME``, as the library spells an object's path."""
        return self._client().bucket(self.bucket_name).blob(key).path

    def read(self, key: str, start: int = 0, length: int | None = None,
             if_match: str | None = None) -> ObjectBody:
        want = None if if_match is None else _generation(if_match)
        client, http = self._client(), self._http()
        url = f"{client.api_endpoint}/download/storage/v1{self._object_path(key)}"
        params = {"alt": "media"}
        if want is not None:
            params["ifGenerationMatch"] = str(want)
        headers = {"Accept-Encoding": "gzip"}  # bytes as stored, so ranges and sizes agree
        if start or length is not None:
            headers["Range"] = f"bytes={start}-{'' if length is None else start + length - 1}"

        def attempt() -> requests.Response:
            response = http.get(url, params=params, headers=headers, stream=True,
                                timeout=self.timeout)
            if response.status_code >= 400:
                error = gexc.from_http_response(response)  # reads the short error body
                response.close()
                raise error
            return response

        with self._errors(key):
            response = self._first_response(key, start, want, self.retry(attempt))
        if isinstance(response, ObjectInfo):  # empty, read from 0
            return ObjectBody(response, 0, 0, iter(()))
        try:
            info, served = self._response_info(response, key)
            # the generation check again: an emulator may ignore ifGenerationMatch
            length = served_length(info, start, length, None if want is None else str(want))
        except BaseException:
            response.close()
            raise
        chunks = self._stream(response, key, start - served, length)
        return ObjectBody(info, start, length, chunks, response.close)

    def _first_response(self, key: str, start: int, want: int | None,
                        attempt: Callable[[], requests.Response]
                        ) -> requests.Response | ObjectInfo:
        """The download, or the object's info when it is empty and read from 0.

        GCS answers 416 to a ranged read of an empty object. The size is then
        checked, and a write may have filled the object in between: a read
        from 0 (or inside the new size) is tried again rather than refused.
        """
        for _ in range(5):
            try:
                return attempt()
            except gexc.RequestRangeNotSatisfiable:
                info = self.stat(key)
            if info is None:
                raise NotFound(f"no such key: {key}")
            if want is not None and info.version != str(want):
                raise PreconditionFailed("object changed since it was observed")
            if start == 0 and info.size == 0:
                return info
            if start >= info.size:
                raise RangeNotSatisfiable(info.size)
        raise BackendUnavailable(f"read of {key!r}: the object kept changing size")

    @staticmethod
    def _response_info(response: requests.Response, key: str) -> tuple[ObjectInfo, int]:
        """The object's info and the first offset served, from download headers."""
        h = response.headers
        if not h.get("X-Goog-Generation"):
            raise BackendUnavailable(f"download of {key!r} carried no X-Goog-Generation")
        served = 0
        if response.status_code == 206:  # Content-Range: bytes a-b/size
            span, _, size = h.get("Content-Range", "").partition("/")
            served = int(span.split()[-1].split("-")[0])
        else:
            size = h.get("X-Goog-Stored-Content-Length") or h.get("Content-Length") or "0"
        stamp = h.get("Last-Modified")
        modified = parsedate_to_datetime(stamp).timestamp() if stamp else None
        return ObjectInfo(size=int(size), version=h["X-Goog-Generation"], modified=modified,
                          content_type=h.get("Content-Type")), served

    def _stream(self, response: requests.Response, key: str, skip: int,
                length: int) -> Iterator[bytes]:
        """``length`` bytes after ``skip`` (a server ignoring Range sends from 0)."""
        remaining = length
        with self._errors(key):
            for piece in response.raw.stream(READ_CHUNK, decode_content=False):
                if skip:
                    cut = min(skip, len(piece))
                    piece, skip = piece[cut:], skip - cut
                piece = piece[:remaining]
                remaining -= len(piece)
                if piece:
                    yield piece
                if remaining <= 0:
                    return
            if remaining > 0:  # truncate the reply rather than end it short and "complete"
                raise BackendUnavailable(f"download of {key!r} ended {remaining} bytes early")

    # -- writes ---------------------------------------------------------------

    def write(self, key: str, body: Readable, length: int | None,
              if_match: str | None = None, if_none_match: bool = False) -> ObjectInfo:
        generation = 0 if if_none_match else (None if if_match is None else _generation(if_match))
        first = bytes(read_up_to(body, CHUNK if length is None else min(length, CHUNK)))
        if (length is not None and length <= CHUNK) or len(first) < CHUNK:
            blob = self._bucket().blob(key)
            with self._errors(key):
                blob.upload_from_file(io.BytesIO(first), size=len(first), content_type=OCTET,
                                      if_generation_match=generation, timeout=self.timeout,
                                      retry=self.retry)
            return _blob_info(blob)  # filled in from the upload's response
        return self._write_resumable(key, body, first, length, generation)

    def _write_resumable(self, key: str, body: Readable, chunk: bytes, length: int | None,
                         generation: int | None) -> ObjectInfo:
        """Stream ``body`` into a resumable session; cancel the session on any failure."""
        http = self._http()
        with self._errors(key):
            url = self._bucket().blob(key).create_resumable_upload_session(
                content_type=OCTET, size=length, if_generation_match=generation,
                timeout=self.timeout, retry=self.retry)
        with uploads.tracked(lambda: self._cancel(http, url)):
            return self._send_chunks(http, url, key, body, chunk, length, generation)

    def _send_chunks(self, http: AuthorizedSession, url: str, key: str, body: Readable,
                     chunk: bytes, length: int | None, generation: int | None) -> ObjectInfo:
        offset = 0
        try:
            with self._errors(key):
                while True:
                    final = len(chunk) < CHUNK or offset + len(chunk) == length
                    if final and generation is not None and self.emulator_workarounds:
                        self._check_version(key, generation, missing=PreconditionFailed)
                    response = self._put_part(http, url, chunk, offset, final)
                    offset += len(chunk)
                    if final:
                        if response.status_code == 308:
                            raise BackendUnavailable("GCS did not finalize the upload")
                        return _resource_info(response.json())  # no stat needed
                    chunk = bytes(read_up_to(body, CHUNK))
        except BaseException:
            self._cancel(http, url)
            raise

    def _put_part(self, http: AuthorizedSession, url: str, chunk: bytes, offset: int,
                  final: bool) -> requests.Response:
        """Send one part; a retry first asks GCS how much it has and sends the rest."""
        tries = 0
        size = str(offset + len(chunk)) if final else "*"

        def attempt() -> requests.Response:
            nonlocal tries
            tries += 1
            skip = 0
            if tries > 1:
                committed = self._committed(http, url)
                if isinstance(committed, requests.Response):
                    return committed  # the last part landed; only its answer was lost
                skip = committed - offset
                if not 0 <= skip <= len(chunk):
                    raise BackendUnavailable("resumable upload lost bytes; giving up")
            data = chunk[skip:]
            span = f"{offset + skip}-{offset + len(chunk) - 1}" if data else "*"
            response = http.put(url, data=data, timeout=self.timeout,
                                headers={"Content-Range": f"bytes {span}/{size}"})
            if response.status_code in (200, 201, 308):
                return response
            raise gexc.from_http_response(response)

        return attempt() if self.emulator_workarounds else self.retry(attempt)()

    def _committed(self, http: AuthorizedSession, url: str) -> int | requests.Response:
        """Bytes a session has persisted (a 308's ``Range``), or its final response."""
        response = http.put(url, data=b"", timeout=self.timeout,
                            headers={"Content-Range": "bytes */*"})
        if response.status_code in (200, 201):
            return response
        if response.status_code != 308:
            raise gexc.from_http_response(response)
        persisted = response.headers.get("Range", "")
        return int(persisted.rpartition("-")[2]) + 1 if persisted else 0

    def _cancel(self, http: AuthorizedSession, url: str) -> None:
        """Abandon a session (GCS answers 499), so no half upload is left behind."""
        try:
            http.delete(url, timeout=self.timeout)
        except (requests.RequestException, auth_exc.GoogleAuthError):
            pass  # unreachable now: GCS drops the idle session after a week

    def _check_version(self, key: str, generation: int, missing: type[SidecarError]) -> None:
        """The precondition an emulator would ignore, checked first (racy; emulators only)."""
        current = self.stat(key)
        if current is None:
            if generation != 0:
                raise missing(f"no such key: {key}")
        elif current.version != str(generation):
            raise PreconditionFailed("stored generation differs from the precondition")

    def delete(self, key: str, if_match: str | None = None) -> None:
        generation = None if if_match is None else _generation(if_match)
        if generation is not None and self.emulator_workarounds:
            self._check_version(key, generation, missing=NotFound)
        with self._errors(key):
            self._bucket().blob(key).delete(if_generation_match=generation,
                                            timeout=self.timeout, retry=self.retry)

    # -- listing and attributes -------------------------------------------------

    def list_page(self, prefix: str, delimiter: str | None, start_after: str | None,
             max_keys: int) -> ListPage:
        offset = start_after  # startOffset is inclusive; a rolled-up "a/" -> "a0" skips a/*
        if start_after is not None and delimiter and start_after.endswith("/"):
            offset = start_after[:-1] + "0"
        with self._errors(prefix):
            listing = self._client().list_blobs(
                self.bucket_name, prefix=prefix or None, delimiter=delimiter,
                start_offset=offset, page_size=min(max_keys + 1, 1000), fields=LIST_FIELDS,
                timeout=self.timeout, retry=self.retry)
            infos: dict[str, ObjectInfo] = {}
            entries = _merge_pages(listing, prefix, start_after, max_keys + 1, infos)
        page = ListPage()
        for name, is_prefix in entries[:max_keys]:
            (page.prefixes if is_prefix else page.keys).append(name)
        page.infos = {key: infos[key] for key in page.keys if key in infos}
        if len(entries) > max_keys:
            page.next = entries[max_keys - 1][0]
        return page

    def get_attrs(self, key: str) -> dict[str, str]:
        with self._errors(key):
            blob = self._bucket().get_blob(key, timeout=self.timeout, retry=self.retry)
        if blob is None:
            raise NotFound(f"no such key: {key}")
        attrs = {"url": f"gs://{self.bucket_name}/{key}", "version": str(blob.generation),
                 "generation": str(blob.generation), "size": str(blob.size or 0),
                 "metageneration": str(blob.metageneration or ""),
                 "content_type": blob.content_type or OCTET,
                 "storage_class": blob.storage_class or ""}
        signed = self._signed_url(blob)
        if signed:
            attrs["signed_url"] = signed
        return attrs

    def _signed_url(self, blob: storage.Blob) -> str | None:
        """A V4 GET URL where the credentials can sign locally (e.g. a key file)."""
        credentials = None if self.emulator_host else self._default_credentials()
        if not isinstance(credentials, Signing):
            return None
        try:
            return blob.generate_signed_url(version="v4", expiration=SIGNED_URL_TTL,
                                            method="GET", credentials=credentials)
        except (AttributeError, TypeError, ValueError, auth_exc.GoogleAuthError):
            return None

    def set_attr(self, key: str, name: str, value: str) -> None:
        if name != "content_type":
            raise Forbidden(f"attribute {name!r} is not writable on GCS (only content_type)")
        with self._errors(key):
            blob = self._bucket().get_blob(key, timeout=self.timeout, retry=self.retry)
            if blob is None:
                raise NotFound(f"no such key: {key}")
            blob.content_type = value
            blob.patch(if_metageneration_match=blob.metageneration, timeout=self.timeout,
                       retry=self.retry)

    def is_dir(self, key: str) -> bool:
        """A marker ``key/`` or any object under it (``list`` leaves the marker out)."""
        return self._first_page(key.rstrip("/") + "/") > 0

    def ping(self) -> None:
        """List one object: proves bucket, credentials and the list permission we need."""
        try:
            self._first_page(None)
        except NotFound:
            raise BackendUnavailable(f"bucket {self.bucket_name!r} does not exist") from None

    def _first_page(self, prefix: str | None) -> int:
        """How many objects (0 or 1) a one-item listing under ``prefix`` finds."""
        with self._errors(prefix or ""):
            listing = self._client().list_blobs(self.bucket_name, prefix=prefix, max_results=1,
                                                fields=LIST_FIELDS, timeout=self.timeout,
                                                retry=self.retry)
            return sum(1 for _ in next(iter(listing.pages), ()))

    def close(self) -> None:
        for clients in self._clients.pop_all():
            clients.http.close()
            clients.storage.close()


def _merge_pages(listing: HTTPIterator, prefix: str, start_after: str | None,
                 want: int, infos: dict[str, ObjectInfo]) -> list[tuple[str, bool]]:
    """Sorted ``(name, is_prefix)`` past ``start_after``: ``want`` of them, or all there are.

    Items and prefixes arrive apart; an entry is final once it sorts at or
    before the last item of a page (GCS walks names in order). fake-gcs
    repeats later prefixes on every page, hence the set. The marker named
    ``prefix`` is the listed directory itself, not an entry (as a cursor it
    would skip the whole listing). Each object's size, generation and time
    go into ``infos`` (free: they come with the listing).
    """
    seen: set[tuple[str, bool]] = set()
    after = start_after or ""
    for page in listing.pages:
        blobs = list(page)
        names = [blob.name for blob in blobs]
        infos.update((blob.name, _blob_info(blob)) for blob in blobs
                     if blob.generation is not None and not blob.name.endswith("/"))
        seen.update((name, False) for name in names if name != prefix)
        seen.update((name, True) for name in page.prefixes)
        if listing.next_page_token is None:
            break
        bound = max(names) if names else max(page.prefixes, default="")
        if sum(1 for name, _ in seen if after < name <= bound) >= want:
            break
    return sorted(e for e in seen if e[0] > after)[:want]


def create_app(consistency: str | None = None) -> Flask:
    """WSGI factory: ``gunicorn 'sidecars.gcs:create_app()'``."""
    return app_from_env(GcsBackend.from_settings(settings.gcs()), consistency, "vfs-state-gcs")
