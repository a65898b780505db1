"""Where raw bytes come from: a file on local disk, or an object in a store (s3://, gs://, az://, https://).

`paths.raw` (and `pixelscope ingest URL`, `monitor DROP`) is a local folder or a `Url`: a string
that joins like a Path (`Url("s3://b/photos") / "cat/1.jpg"`). Stores are listed through fsspec
(s3fs for S3 and S3-compatible stores); S3 objects are fetched by SigV4-signed GETs over a urllib3
pool (`S3Reader`: less than half the CPU of s3fs per object), other stores' through fsspec; always
straight into memory: no temp files, no local copy.

Credentials come only from the standard places of each store (for S3: the environment,
`AWS_PROFILE` / ~/.aws, instance roles); params hold no secret, so none reaches a log, a metric,
the bundle or the ledger. `storage.endpoint_url` (or the standard `AWS_ENDPOINT_URL`, which DVC
reads too) points at an S3-compatible store.

Reading an object: retried with exponential backoff (and jitter) on throttling, 5xx answers,
timeouts and dropped connections, up to `storage.retries` times; an object that cannot be read
becomes an `ImageError` whose reason says why: `gone` (deleted since it was listed), `forbidden`,
`timeout`, `too_large` or `read_error`. Many objects are fetched at once on a thread pool
(`storage.concurrency` per process, `fetch_many`), so a worker decodes one image while the next
ones are in flight: latency is hidden, not paid per image. At most 2 x that many objects' bytes
(the fetch window) are held per process.
"""

from __future__ import annotations

import errno
import functools
import os
import random
import re
import stat
import threading
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote

from pixelscope.config import StorageConfig
from pixelscope.errors import StorageError
from pixelscope.io.decode import READ_ERROR, ImageError
from pixelscope.io.url import Url, is_url

if TYPE_CHECKING:
    from fsspec import AbstractFileSystem

NOT_A_FILE = "not_a_file"
TOO_LARGE = "too_large"
GONE = "gone"
FORBIDDEN = "forbidden"
TIMEOUT = "timeout"

# --- how a process reaches the store ------------------------------------------------------------

_DEFAULT = [StorageConfig()]
_ENV_PREFIXES = ("AWS_", "FSSPEC_", "GOOGLE_", "GCE_", "AZURE_", "BOTO_")


def configure(storage: StorageConfig) -> None:
    """The storage params a step runs with (readers called without one use them): each step that
    reads raw images calls this with params.storage first."""
    _DEFAULT[0] = storage


@dataclass(frozen=True)
class Access:
    """What a worker process needs to read a store as its parent does: the storage params and the
    store variables of the parent's environment (credentials included), handed over in memory
    through the pool's pipe - a fork server started earlier has an older environment - and never
    shown (repr hides them) or written."""

    storage: StorageConfig = StorageConfig()
    env: tuple[tuple[str, str], ...] = field(default=(), repr=False)

    @classmethod
    def here(cls) -> Access:
        return cls(_DEFAULT[0], tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith(_ENV_PREFIXES))))

    def apply(self) -> None:
        os.environ.update(dict(self.env))
        configure(self.storage)


def start_worker(access: Access) -> None:
    """A pool initializer: the worker dies with its parent and reads the store as the parent does."""
    from pixelscope.io.parallel import die_with_parent

    die_with_parent()
    access.apply()


# --- stores --------------------------------------------------------------------------------------


def filesystem(protocol: str, storage: StorageConfig | None = None) -> AbstractFileSystem:
    """The fsspec filesystem for a protocol (cached per process by fsspec; a forked child gets its own)."""
    import fsspec

    storage = storage or _DEFAULT[0]
    options: dict[str, Any] = {}
    if protocol in ("s3", "s3a"):
        client: dict[str, Any] = {}
        if storage.endpoint_url:
            client["endpoint_url"] = storage.endpoint_url
        if storage.region:
            client["region_name"] = storage.region
        # retries are ours (counted, the same for every store); botocore's own would hide them
        options = {"client_kwargs": client, "anon": storage.anonymous, "version_aware": storage.version_aware,
                   "config_kwargs": {"connect_timeout": storage.timeout_s, "read_timeout": storage.timeout_s,
                                     "retries": {"total_max_attempts": 1},
                                     "max_pool_connections": max(10, storage.concurrency * 2)}}
    try:
        fs = fsspec.filesystem(protocol, **options)
    except ImportError as e:
        raise StorageError(f"{protocol}:// needs its fsspec package ({e}); for S3: pip install s3fs "
                           "(pixelscope's `cloud` extra)") from None
    if protocol in ("s3", "s3a"):
        fs.retries = 1  # s3fs's own retry loop (SlowDown, 5xx) would hide them from ours too
    return fs


_TRANSIENT = ("slowdown", "throttl", "503", "500", "502", "504", "internalerror", "serviceunavailable",
              "requesttimeout", "timeout", "timed out", "connection", "reset by peer", "broken pipe",
              "temporarily", "please reduce", "incompleteread", "serverdisconnected")


def classify(e: BaseException) -> tuple[str, bool]:
    """An exception from a store -> (reason, worth retrying)."""
    if isinstance(e, HTTPStatusError):
        if e.status == 404:
            return GONE, False
        if e.status in (401, 403):
            return FORBIDDEN, False
        return (TIMEOUT if e.status == 408 else READ_ERROR), e.status in (408, 429) or e.status >= 500
    if isinstance(e, FileNotFoundError):
        return GONE, False
    if isinstance(e, PermissionError):
        return FORBIDDEN, False
    text = f"{type(e).__name__} {e}".lower()
    if isinstance(e, OSError) and e.errno in (errno.EACCES, errno.EPERM):
        return FORBIDDEN, False
    if isinstance(e, TimeoutError) or "timeout" in type(e).__name__.lower():
        return TIMEOUT, True
    return READ_ERROR, any(word in text for word in _TRANSIENT)


@dataclass
class Retrying:
    """Retries with exponential backoff and jitter; counts what it retried (for metrics)."""

    retries: int = 5
    base_s: float = 0.05
    max_s: float = 5.0
    retried: int = 0

    def call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        for attempt in range(self.retries + 1):
            try:
                return fn(*args, **kwargs)
            except Exception as e:  # noqa: BLE001 - classified below: retried, or the caller's error row
                _, transient = classify(e)
                if not transient or attempt == self.retries:
                    raise
                self.retried += 1
                time.sleep(min(self.max_s, self.base_s * 2 ** attempt) * (0.5 + random.random()))
        raise AssertionError("unreachable")


_RETRIED = [0]
_RETRIED_LOCK = threading.Lock()


def retried(add: int = 0) -> int:
    """How many reads this process (and the workers that reported to it) retried so far."""
    with _RETRIED_LOCK:
        _RETRIED[0] += add
        return _RETRIED[0]


class HTTPStatusError(OSError):
    """A store answered a GET with an error status (kept apart so classify() can read the status)."""

    def __init__(self, status: int, body: bytes):
        # only the error's code and message: an S3 error body can echo the request (access key id included)
        text = body[:2000].decode("utf-8", "replace")
        said = [m.group(1) for tag in ("Code", "Message") if (m := re.search(f"<{tag}>(.*?)</{tag}>", text, re.S))]
        super().__init__(f"HTTP {status}" + (f": {' - '.join(said)}" if said else ""))
        self.status = status


class S3Reader:
    """GET of S3 objects over a urllib3 connection pool, each request signed (SigV4, in headers) by
    botocore with the credentials, region and endpoint it resolves from the standard places.
    Measured on loopback: 0.9 ms of client CPU per object, against 2.0 ms through s3fs
    (aiobotocore's whole request pipeline) and 1.5 ms through a boto3 client - for the ingest, the
    difference between 0.57 and 0.76 of the local-disk rate once the store's CPU is elsewhere
    (BENCHMARKS.md, "Ingest from a bucket"). The object URL
    (virtual-host or path style, region, custom endpoint) is botocore's: learnt once per bucket
    from a presigned URL. Listing stays with s3fs."""

    def __init__(self, storage: StorageConfig):
        import botocore.session
        import urllib3
        from botocore.config import Config

        self.session = botocore.session.get_session()
        self.storage = storage
        self.config = Config(signature_version="s3v4")
        self.clients: dict[str | None, Any] = {}
        self.bases: dict[tuple[str, str | None], str] = {}  # (bucket, region) -> URL up to the key
        self.region_of: dict[str, str] = {}  # a bucket in another region than the default: learnt from its answer
        timeout = urllib3.Timeout(connect=storage.timeout_s, read=storage.timeout_s)
        self.http = urllib3.PoolManager(maxsize=max(10, storage.concurrency), timeout=timeout, retries=False)
        self.lock = threading.Lock()

    def _base(self, bucket: str, region: str | None) -> tuple[str, str]:
        with self.lock:
            if region not in self.clients:
                self.clients[region] = self.session.create_client(
                    "s3", endpoint_url=self.storage.endpoint_url, region_name=region, config=self.config)
            client = self.clients[region]
            if (bucket, region) not in self.bases:
                url = client.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "k"})
                self.bases[(bucket, region)] = url.split("?", 1)[0][:-1]
            return self.bases[(bucket, region)], client.meta.region_name

    def _headers(self, url: str, region: str) -> dict[str, str]:
        if self.storage.anonymous:
            return {}
        from botocore.auth import S3SigV4Auth
        from botocore.awsrequest import AWSRequest

        credentials = self.session.get_credentials()
        if credentials is None:
            raise PermissionError("no AWS credentials found (environment, AWS_PROFILE, ~/.aws, instance role)")
        request = AWSRequest(method="GET", url=url, headers={"x-amz-content-sha256": "UNSIGNED-PAYLOAD"})
        S3SigV4Auth(credentials.get_frozen_credentials(), "s3", region).add_auth(request)
        return dict(request.headers.items())

    def get(self, url: Url, max_bytes: int) -> bytes:
        bucket, _, key = url.key.partition("/")
        for _ in range(2):
            base, region = self._base(bucket, self.region_of.get(bucket, self.storage.region))
            target = base + quote(key, safe="/~")
            resp = self.http.request("GET", target, headers=self._headers(target, region), preload_content=False)
            try:
                data: bytes = resp.read(max_bytes + 1)
                moved = resp.headers.get("x-amz-bucket-region")
                if resp.status in (301, 307, 400) and moved and moved != region:
                    self.region_of[bucket] = moved  # signed for the wrong region: sign again for the bucket's
                    continue
                if resp.status >= 300:
                    raise HTTPStatusError(resp.status, data)
                return data
            finally:
                resp.release_conn()
        raise HTTPStatusError(400, b"the bucket's region could not be settled")


_READERS: dict[tuple[int, StorageConfig], S3Reader] = {}


def s3_reader(storage: StorageConfig) -> S3Reader:
    key = (os.getpid(), storage)  # a forked child makes its own (connections and locks are not fork-safe)
    with _POOL_LOCK:
        reader = _READERS.get(key)
        if reader is None:
            reader = _READERS[key] = S3Reader(storage)
        return reader


def read_object(url: Url, max_bytes: int, storage: StorageConfig | None = None, size: int | None = None) -> bytes:
    """An object's bytes (at most max_bytes), retried on transient errors; ImageError with a reason otherwise."""
    storage = storage or _DEFAULT[0]
    if size is not None and size > max_bytes:
        raise ImageError(TOO_LARGE, f"{size:,} bytes, more than ingest.max_file_bytes ({max_bytes:,})")
    retry = Retrying(storage.retries)
    if url.protocol in ("s3", "s3a"):
        fetch: Any = functools.partial(s3_reader(storage).get, url, max_bytes)
    else:  # gs://, az://, https://, ...: fsspec; at most max_bytes + 1 bytes, so a huge object is never read whole
        key = quote(url, safe=":/~@!$&'()*+,;=") if url.protocol in ("http", "https") else url.key  # names are unquoted
        fetch = functools.partial(filesystem(url.protocol, storage).cat_file, key, start=0, end=max_bytes + 1)
    try:
        data: bytes = retry.call(fetch)
    except Exception as e:  # noqa: BLE001 - a row with a reason, never the end of the run
        reason, _ = classify(e)
        detail = {GONE: "the object is gone (deleted or renamed after it was listed)",
                  FORBIDDEN: "access denied to this object"}.get(reason, f"{type(e).__name__}: {e}")
        raise ImageError(reason, detail + (f" (after {retry.retried} retries)" if retry.retried else "")) from None
    finally:
        if retry.retried:
            retried(retry.retried)
    if len(data) > max_bytes:
        raise ImageError(TOO_LARGE, f"more than ingest.max_file_bytes ({max_bytes:,}) bytes")
    return data


def read_file(path: str, max_bytes: int) -> bytes:
    """The bytes of a regular file of at most max_bytes; ImageError otherwise. Opened without
    blocking (a FIFO with no writer would hang a plain open) and checked on the open descriptor."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as e:
        raise ImageError(READ_ERROR, f"{type(e).__name__}: {e}") from None
    with open(fd, "rb") as fh:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            kind = ("a FIFO" if stat.S_ISFIFO(st.st_mode) else "a device" if stat.S_ISCHR(st.st_mode) or
                    stat.S_ISBLK(st.st_mode) else "a socket" if stat.S_ISSOCK(st.st_mode) else "not a regular file")
            raise ImageError(NOT_A_FILE, f"{kind}, not a regular file")
        if st.st_size > max_bytes:
            raise ImageError(TOO_LARGE, f"{st.st_size:,} bytes, more than ingest.max_file_bytes ({max_bytes:,})")
        try:
            data = fh.read(max_bytes + 1)
        except OSError as e:
            raise ImageError(READ_ERROR, f"{type(e).__name__}: {e}") from None
    if len(data) > max_bytes:  # it grew while it was read
        raise ImageError(TOO_LARGE, f"more than ingest.max_file_bytes ({max_bytes:,}) bytes")
    return data


def read_bytes(location: str | os.PathLike[str], max_bytes: int = 1 << 30, storage: StorageConfig | None = None,
               size: int | None = None) -> bytes:
    """The bytes of a local file or a store object: the one reader every stage uses for raw images."""
    if is_url(location):
        return read_object(Url(str(location)), max_bytes, storage, size)
    return read_file(os.fspath(location), max_bytes)


_POOL: dict[tuple[int, int], ThreadPoolExecutor] = {}
_POOL_LOCK = threading.Lock()


def _threads(concurrency: int) -> ThreadPoolExecutor:
    key = (os.getpid(), concurrency)  # a forked child never reuses its parent's threads
    with _POOL_LOCK:
        pool = _POOL.get(key)
        if pool is None:
            pool = _POOL[key] = ThreadPoolExecutor(concurrency, thread_name_prefix="pixelscope-fetch")
        return pool


def fetch_many(locations: Iterable[tuple[str, int | None]], max_bytes: int,
               storage: StorageConfig | None = None) -> Iterator[bytes | ImageError]:
    """Bytes (or the ImageError) of each (location, listed size), in order; store objects are
    fetched storage.concurrency at a time, so the caller works on one while the next ones arrive."""
    storage = storage or _DEFAULT[0]
    items = list(locations)

    def one(item: tuple[str, int | None]) -> bytes | ImageError:
        try:
            return read_bytes(item[0], max_bytes, storage, item[1])
        except ImageError as e:
            return e

    if not any(is_url(loc) for loc, _ in items):  # local files: read in order, here
        yield from map(one, items)
        return
    pool = _threads(storage.concurrency)
    window = storage.concurrency * 2  # in flight: bounded, so memory is too
    futures = [pool.submit(one, item) for item in items[:window]]
    for k in range(len(items)):
        if k + window < len(items):
            futures.append(pool.submit(one, items[k + window]))
        yield futures[k].result()
        futures[k] = None  # type: ignore[call-overload]  # let its bytes go


# --- listing -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    rel: str  # relative to the listed prefix, POSIX
    size: int | None
    etag: str | None
    version_id: str | None
    modified: str | None  # ISO 8601


def list_objects(url: Url, storage: StorageConfig | None = None) -> list[ObjectInfo]:
    """Every object under url (key, size, ETag, version id, last-modified), sorted by key.

    A store that refuses (credentials, no such bucket, unreachable) is a StorageError naming the
    bucket and the fix, never a traceback."""
    storage = storage or _DEFAULT[0]
    fs = filesystem(url.protocol, storage)
    retry = Retrying(storage.retries)
    try:
        found: dict[str, dict[str, Any]] = retry.call(fs.find, url.key, detail=True)
    except Exception as e:  # noqa: BLE001 - one clear message for everything a listing can meet
        raise StorageError(listing_error(url, e)) from None
    prefix = url.key.rstrip("/") + "/"
    out = []
    for key, info in found.items():
        if info.get("type", "file") != "file" or key.endswith("/"):
            continue
        rel = key[len(prefix):] if key.startswith(prefix) else key.rsplit("/", 1)[-1]
        if url.protocol in ("http", "https"):
            rel = unquote(rel)  # a folder listing's links are percent-encoded; the manifest holds the names
        modified: Any = info.get("LastModified") or info.get("last_modified") or info.get("mtime")
        etag = info.get("ETag") or info.get("etag")
        out.append(ObjectInfo(rel, info.get("size"), etag.strip('"') if isinstance(etag, str) else None,
                              info.get("VersionId") or info.get("version_id"),
                              modified.isoformat() if hasattr(modified, "isoformat") else
                              (str(modified) if modified else None)))
    out.sort(key=lambda o: o.rel)
    return out


def listing_error(url: Url, e: BaseException) -> str:
    text = f"{type(e).__name__}: {e}"
    low = text.lower()
    where = f"{url.protocol}://{url.bucket}"
    if isinstance(e, PermissionError) or any(w in low for w in ("accessdenied", "access denied", "forbidden",
                                                                  "invalidaccesskeyid", "signaturedoesnotmatch",
                                                                  "credentials", "403")):
        return (f"cannot list {url}: the store refused the credentials for {where} ({text.splitlines()[0][:200]}). "
                "Check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY or AWS_PROFILE (pixelscope reads credentials only "
                "from the standard places), and storage.endpoint_url for an S3-compatible store")
    if isinstance(e, FileNotFoundError) or "nosuchbucket" in low:
        return f"cannot list {url}: no such bucket or prefix ({where})"
    return (f"cannot list {url} ({text.splitlines()[0][:200]}): is the store reachable? "
            "(storage.endpoint_url / AWS_ENDPOINT_URL for an S3-compatible store)")
