"""Where blobs, index files and inputs live: the local filesystem or any S3-compatible store.

Both backends take full URIs (``/abs/path``, ``file:///abs/path``, ``s3://bucket/key``) so a row
of the index names its object completely and any process can read it back with
``open_storage(uri).get_range(uri, offset, length)``.

Writes are all-or-nothing: a local file is written under a temporary name and renamed into
place, an S3 object appears only when its PUT (or multipart upload) completes. So a worker killed
mid-write never leaves a half blob under a name the index could point at.

S3 goes through boto3 with the standard credential chain (environment, profile, instance role)
and an optional endpoint URL for non-AWS stores. botocore's "standard" retry mode retries
throttling (SlowDown, 503) and 5xx answers with exponential backoff and jitter; `_retry` adds the
same for failures botocore leaves to the caller (a body stream cut off half way).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import os
import random
import stat
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

MIB = 1 << 20


SkipHook = Callable[[str, str], None]


def _unreadable_reason(err: OSError) -> str:
    if err.errno == errno.ELOOP:
        return "symlink loop"
    if isinstance(err, FileNotFoundError):
        return "broken symlink"
    return f"cannot stat: {err.strerror or err}"


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "FIFO"), (stat.S_ISSOCK, "socket"),
                       (stat.S_ISCHR, "character device"), (stat.S_ISBLK, "block device")):
        if test(mode):
            return name
    return "special file"


class StorageError(Exception):
    """A read, write or listing failed for a reason worth showing to the user."""


class NotFound(StorageError, FileNotFoundError):
    """The object or file does not exist."""


@dataclass(frozen=True)
class StorageOptions:
    """How to reach S3 (ignored for local paths). Plain data, so it ships to every worker.

    endpoint_url: None uses ``PILC_S3_ENDPOINT_URL`` if set, else boto3's own resolution
    (``AWS_ENDPOINT_URL``, config files, AWS itself).
    """

    endpoint_url: str | None = None
    region: str | None = None
    max_attempts: int = 8
    multipart_threshold: int = 64 * MIB
    part_size: int = 16 * MIB
    connect_timeout: float = 10.0
    read_timeout: float = 60.0
    addressing_style: str = "auto"
    list_page_size: int = 1000
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_any(cls, value: StorageOptions | dict | None) -> StorageOptions:
        if value is None:
            return cls()
        if isinstance(value, StorageOptions):
            return value
        known = {k: v for k, v in value.items() if k in cls.__dataclass_fields__}
        return cls(**known)


# --------------------------------------------------------------------------------------------
# URIs


def is_s3(uri: str) -> bool:
    return str(uri).startswith("s3://")


def split_s3(uri: str) -> tuple[str, str]:
    """``s3://bucket/key`` -> (bucket, key); the key may be empty (a bucket root prefix)."""
    if not is_s3(uri):
        raise StorageError(f"not an s3:// URI: {uri!r}")
    rest = uri[5:]
    bucket, _, key = rest.partition("/")
    if not bucket:
        raise StorageError(f"S3 URI without a bucket: {uri!r}")
    return bucket, key


def local_path(uri: str | os.PathLike) -> Path:
    """A local path from a plain path or a ``file://`` URI."""
    s = os.fspath(uri)
    if s.startswith("file://"):
        s = s[7:]
    if "://" in s:
        raise StorageError(f"unsupported URI scheme in {s!r} (use a local path or s3://)")
    return Path(s)


def normalize(uri: str | os.PathLike) -> str:
    """Canonical form: ``s3://...`` kept, local paths made absolute (no ``file://``)."""
    s = os.fspath(uri)
    if is_s3(s):
        return s
    return str(local_path(s).expanduser().resolve())


def join(base: str, *parts: str) -> str:
    """Join URI parts with '/', for S3 and local paths alike."""
    out = str(base).rstrip("/")
    for p in parts:
        p = str(p).strip("/")
        if p:
            out = f"{out}/{p}"
    return out


# --------------------------------------------------------------------------------------------
# retries


def _retry(fn: Callable[[], T], attempts: int, what: str, retryable: tuple[type, ...]) -> T:
    """Call `fn`, retrying `retryable` errors with exponential backoff plus jitter."""
    delay = 0.1
    for i in range(attempts):
        try:
            return fn()
        except retryable as e:
            if i == attempts - 1:
                raise StorageError(f"{what} failed after {attempts} attempts: {e}") from e
            time.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, 10.0)
    raise AssertionError("unreachable")


# --------------------------------------------------------------------------------------------
# backends


@dataclass(frozen=True)
class ObjectInfo:
    uri: str
    size: int
    mtime: float  # seconds since the epoch


class Storage:
    """Interface both backends implement (all URIs absolute)."""

    def put(self, uri: str, data: bytes | memoryview) -> None:
        raise NotImplementedError

    def put_file(self, path: str | os.PathLike, uri: str) -> None:
        raise NotImplementedError

    def put_if_absent(self, uri: str, data: bytes) -> bool:
        """Create `uri` only if nothing is there (atomically: of two racing callers one wins);
        False if it exists. What a lease on DEST is built on."""
        raise NotImplementedError

    def get_versioned(self, uri: str) -> tuple[bytes, str]:
        """The object and a tag naming this version of it (S3: its ETag; locally: a hash of
        its bytes), for `put_if_match` / `delete_if_match`."""
        raise NotImplementedError

    def put_if_match(self, uri: str, data: bytes, tag: str) -> str | None:
        """Replace `uri` with `data` only if it is still the version `tag` names (atomically:
        of two callers replacing the same version one wins); the new version's tag, or None if
        `uri` changed or is gone. What taking over and renewing a lease on DEST are built on."""
        raise NotImplementedError

    def delete_if_match(self, uri: str, tag: str) -> bool:
        """Delete `uri` only if it is still the version `tag` names; False if it changed."""
        raise NotImplementedError

    def get(self, uri: str) -> bytes:
        raise NotImplementedError

    def get_range(self, uri: str, offset: int, length: int) -> bytes:
        raise NotImplementedError

    def size(self, uri: str) -> int:
        return self.stat(uri).size

    def stat(self, uri: str) -> ObjectInfo:
        raise NotImplementedError

    def exists(self, uri: str) -> bool:
        try:
            self.size(uri)
            return True
        except NotFound:
            return False

    def list(self, prefix: str, on_skip: SkipHook | None = None) -> Iterator[ObjectInfo]:
        """Every object under `prefix` (recursive), in lexicographic order of URI; what is
        there but is no object (a broken link, a FIFO, a symlink loop) goes to on_skip(path,
        reason) instead."""
        raise NotImplementedError

    def delete(self, uri: str) -> None:
        raise NotImplementedError

    def list_folder(self, folder: str, on_skip: SkipHook | None = None) -> Iterator[ObjectInfo]:
        """Every object under the folder `folder` (recursive): on S3 the prefix with its
        slash, so `runs` does not also list `runs-old/`."""
        folder = folder.rstrip("/")
        return self.list(folder + "/" if is_s3(folder) else folder, on_skip)

    def open_read(self, uri: str) -> RangedReader:
        """A seekable read-only file over ranged reads (for pyarrow's Parquet reader)."""
        return RangedReader(self, uri, self.size(uri))


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


def _plain_mode(fd: int) -> None:
    """mkstemp makes 0600 files; what we store gets the mode any new file would (0644 under
    the usual umask), so job.json, reports and shards are readable like the rest of DEST."""
    os.fchmod(fd, 0o666 & ~_UMASK)


class LocalStorage(Storage):
    """The local filesystem (also any shared mount all nodes see)."""

    @staticmethod
    def _publish(uri: str, write: Callable[[Any], None], place: Callable[[str, Path], None]
                 ) -> None:
        """Write a hidden temporary next to `uri` (write(file)), then place(tmp, path) makes it
        the real name in one step: readers see the whole file or none of it."""
        path = local_path(uri)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            _plain_mode(fd)
            with os.fdopen(fd, "wb") as f:
                write(f)
            place(tmp, path)
        finally:
            Path(tmp).unlink(missing_ok=True)  # gone already where place() renamed it

    def put(self, uri: str, data: bytes | memoryview) -> None:
        self._publish(uri, lambda f: f.write(data), os.replace)

    def put_file(self, path: str | os.PathLike, uri: str) -> None:
        def copy(out: Any) -> None:
            with open(path, "rb") as src:
                while chunk := src.read(8 * MIB):
                    out.write(chunk)

        self._publish(uri, copy, os.replace)

    def put_if_absent(self, uri: str, data: bytes) -> bool:
        # hard-linked into place: link() fails if the name exists (O_EXCL would expose a
        # half-written file to a reader)
        created = [False]

        def link(tmp: str, path: Path) -> None:
            try:
                os.link(tmp, path)
                created[0] = True
            except FileExistsError:
                pass

        self._publish(uri, lambda f: f.write(data), link)
        return created[0]

    def get(self, uri: str) -> bytes:
        try:
            return local_path(uri).read_bytes()
        except FileNotFoundError as e:
            raise NotFound(f"no such file: {uri}") from e
        except OSError as e:
            raise StorageError(f"cannot read {uri}: {e.strerror or e}") from e

    @staticmethod
    def _tag(data: bytes) -> str:
        return hashlib.sha256(data).hexdigest()[:32]

    def get_versioned(self, uri: str) -> tuple[bytes, str]:
        data = self.get(uri)
        return data, self._tag(data)

    @contextlib.contextmanager
    def _locked(self, uri: str) -> Iterator[None]:
        """An exclusive lock for compare-and-replace on `uri` (flock on a hidden sibling: local
        disks and NFSv4 mounts); plain writes and `put_if_absent` need none."""
        import fcntl

        path = local_path(uri)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path.parent / f".{path.name}.lock", os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock

    def _is_version(self, uri: str, tag: str) -> bool:
        """Whether `uri` exists and is the version `tag` names (call under `_locked`)."""
        try:
            return self._tag(self.get(uri)) == tag
        except NotFound:
            return False

    def put_if_match(self, uri: str, data: bytes, tag: str) -> str | None:
        with self._locked(uri):
            if not self._is_version(uri, tag):
                return None
            self.put(uri, data)
        return self._tag(data)

    def delete_if_match(self, uri: str, tag: str) -> bool:
        with self._locked(uri):
            if not self._is_version(uri, tag):
                return False
            self.delete(uri)
        return True

    def get_range(self, uri: str, offset: int, length: int) -> bytes:
        if offset < 0 or length < 0:
            raise StorageError(f"bad range offset={offset} length={length}")
        try:
            with open(local_path(uri), "rb") as f:
                data = os.pread(f.fileno(), length, offset)
        except FileNotFoundError as e:
            raise NotFound(f"no such file: {uri}") from e
        except OSError as e:
            raise StorageError(f"cannot read {uri}: {e.strerror or e}") from e
        if len(data) != length:
            raise StorageError(f"{uri}: wanted {length} bytes at {offset}, file has {len(data)}")
        return data

    def stat(self, uri: str) -> ObjectInfo:
        try:
            s = local_path(uri).stat()
        except FileNotFoundError as e:
            raise NotFound(f"no such file: {uri}") from e
        return ObjectInfo(uri, s.st_size, s.st_mtime)

    def list(self, prefix: str, on_skip: SkipHook | None = None) -> Iterator[ObjectInfo]:
        root = local_path(prefix)
        if root.is_file():
            st = root.stat()
            yield ObjectInfo(str(root), st.st_size, st.st_mtime)
            return
        if not root.is_dir():
            return
        yield from self._walk(root, on_skip or (lambda path, reason: None), set())

    def _walk(self, folder: Path, on_skip: SkipHook, seen: set[tuple[int, int]]
              ) -> Iterator[ObjectInfo]:
        """Depth first, following symlinks, each real folder once (a link back up the tree
        would otherwise recurse until the path is too long)."""
        try:
            info = folder.stat()
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as e:
            raise StorageError(f"cannot list {folder}: {e.strerror or e}") from e
        seen.add((info.st_dev, info.st_ino))
        for e in entries:
            if e.name.startswith("."):
                continue  # hidden files and our own in-flight temporaries
            try:
                st = e.stat(follow_symlinks=True)
            except OSError as err:
                on_skip(e.path, _unreadable_reason(err))
                continue
            if stat.S_ISDIR(st.st_mode):
                if (st.st_dev, st.st_ino) in seen:
                    on_skip(e.path, "symlink loop: links back to a folder already listed")
                    continue
                yield from self._walk(Path(e.path), on_skip, seen)
            elif stat.S_ISREG(st.st_mode):
                yield ObjectInfo(e.path, st.st_size, st.st_mtime)
            else:
                on_skip(e.path, f"not a regular file ({_kind(st.st_mode)})")

    def delete(self, uri: str) -> None:
        local_path(uri).unlink(missing_ok=True)


class S3Storage(Storage):
    """S3 or any S3-compatible store, through boto3 (one client per process and options)."""

    def __init__(self, options: StorageOptions | None = None) -> None:
        import boto3
        from botocore.config import Config

        self.options = opts = options or StorageOptions()
        endpoint = opts.endpoint_url or os.environ.get("PILC_S3_ENDPOINT_URL") or None
        config = Config(
            retries={"max_attempts": opts.max_attempts, "mode": "standard"},
            connect_timeout=opts.connect_timeout,
            read_timeout=opts.read_timeout,
            s3={"addressing_style": opts.addressing_style},
            max_pool_connections=32,
        )
        session = boto3.session.Session()
        self.client = session.client(
            "s3", endpoint_url=endpoint, region_name=opts.region, config=config, **opts.extra
        )
        from botocore.exceptions import (
            ConnectionError as BotoConnectionError,
        )
        from botocore.exceptions import (
            IncompleteReadError,
            ReadTimeoutError,
            ResponseStreamingError,
        )

        self._transient = (
            IncompleteReadError, ResponseStreamingError, ReadTimeoutError, BotoConnectionError,
            ConnectionError,
        )

    # errors ---------------------------------------------------------------------------------

    def _wrap(self, uri: str, what: str, fn: Callable[[], T]) -> T:
        from botocore.exceptions import ClientError

        try:
            return _retry(fn, self.options.max_attempts, f"{what} {uri}", self._transient)
        except ClientError as e:
            code = str(e.response.get("Error", {}).get("Code", ""))
            if code in ("NoSuchKey", "404", "NotFound", "NoSuchBucket"):
                raise NotFound(f"{what} {uri}: not found ({code})") from e
            raise StorageError(f"{what} {uri}: {code or e}") from e

    # writes ---------------------------------------------------------------------------------

    def put(self, uri: str, data: bytes | memoryview) -> None:
        if len(data) > self.options.multipart_threshold:
            self._multipart(uri, io.BytesIO(data))
            return
        bucket, key = split_s3(uri)
        self._wrap(uri, "PUT", lambda: self.client.put_object(Bucket=bucket, Key=key,
                                                              Body=bytes(data)))

    @staticmethod
    def _precondition_failed(e: StorageError) -> bool:
        """A conditional request refused (412), or raced by another one (409)."""
        from botocore.exceptions import ClientError

        cause = e.__cause__
        return isinstance(cause, ClientError) and str(
            cause.response.get("Error", {}).get("Code", "")
        ) in ("PreconditionFailed", "412", "ConditionalRequestConflict")

    def put_if_absent(self, uri: str, data: bytes) -> bool:
        bucket, key = split_s3(uri)
        try:  # S3 conditional writes: If-None-Match: * refuses an existing key with 412
            self._wrap(uri, "PUT if absent", lambda: self.client.put_object(
                Bucket=bucket, Key=key, Body=bytes(data), IfNoneMatch="*"))
        except StorageError as e:
            if self._precondition_failed(e):
                return False
            raise
        return True

    def put_if_match(self, uri: str, data: bytes, tag: str) -> str | None:
        bucket, key = split_s3(uri)
        try:  # If-Match: the PUT replaces only the version with this ETag (412 otherwise)
            r = self._wrap(uri, "PUT if match", lambda: self.client.put_object(
                Bucket=bucket, Key=key, Body=bytes(data), IfMatch=tag))
        except NotFound:
            return None
        except StorageError as e:
            if self._precondition_failed(e):
                return None
            raise
        return str(r["ETag"])

    def delete_if_match(self, uri: str, tag: str) -> bool:
        bucket, key = split_s3(uri)
        try:
            self._wrap(uri, "DELETE if match", lambda: self.client.delete_object(
                Bucket=bucket, Key=key, IfMatch=tag))
        except NotFound:
            return False
        except StorageError as e:
            if self._precondition_failed(e):
                return False
            raise
        return True

    def put_file(self, path: str | os.PathLike, uri: str) -> None:
        if os.path.getsize(path) > self.options.multipart_threshold:
            with open(path, "rb") as f:
                self._multipart(uri, f)
            return
        self.put(uri, Path(path).read_bytes())

    def _multipart(self, uri: str, stream: io.RawIOBase | io.BufferedIOBase) -> None:
        """Upload in parts (bounded memory; each part retried alone); abort on failure."""
        bucket, key = split_s3(uri)
        part_size = max(5 * MIB, self.options.part_size)  # S3's minimum for all but the last
        upload = self._wrap(uri, "CreateMultipartUpload",
                            lambda: self.client.create_multipart_upload(Bucket=bucket, Key=key))
        upload_id = upload["UploadId"]
        parts = []
        try:
            number = 1
            while True:
                chunk = stream.read(part_size)
                if not chunk and number > 1:
                    break
                n = number
                resp = self._wrap(uri, f"UploadPart {n}", lambda c=chunk, n=n: (
                    self.client.upload_part(Bucket=bucket, Key=key, UploadId=upload_id,
                                            PartNumber=n, Body=c)))
                parts.append({"ETag": resp["ETag"], "PartNumber": n})
                number += 1
                if len(chunk) < part_size:
                    break
            self._wrap(uri, "CompleteMultipartUpload", lambda: (
                self.client.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id,
                                                      MultipartUpload={"Parts": parts})))
        except BaseException:
            try:
                self.client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
            except Exception:
                pass  # the original error matters more; a lifecycle rule cleans leftovers
            raise

    # reads ----------------------------------------------------------------------------------

    def get(self, uri: str) -> bytes:
        bucket, key = split_s3(uri)
        return self._wrap(uri, "GET",
                          lambda: self.client.get_object(Bucket=bucket, Key=key)["Body"].read())

    def get_versioned(self, uri: str) -> tuple[bytes, str]:
        bucket, key = split_s3(uri)

        def read() -> tuple[bytes, str]:
            r = self.client.get_object(Bucket=bucket, Key=key)
            return r["Body"].read(), str(r["ETag"])

        return self._wrap(uri, "GET", read)

    def get_range(self, uri: str, offset: int, length: int) -> bytes:
        if offset < 0 or length < 0:
            raise StorageError(f"bad range offset={offset} length={length}")
        if length == 0:
            return b""
        bucket, key = split_s3(uri)
        rng = f"bytes={offset}-{offset + length - 1}"
        data = self._wrap(uri, "GET range", lambda: self.client.get_object(
            Bucket=bucket, Key=key, Range=rng)["Body"].read())
        if len(data) != length:
            raise StorageError(f"{uri}: wanted {length} bytes at {offset}, got {len(data)}")
        return data

    def stat(self, uri: str) -> ObjectInfo:
        bucket, key = split_s3(uri)
        head = self._wrap(uri, "HEAD", lambda: self.client.head_object(Bucket=bucket, Key=key))
        return ObjectInfo(uri, int(head["ContentLength"]), head["LastModified"].timestamp())

    def list(self, prefix: str, on_skip: SkipHook | None = None) -> Iterator[ObjectInfo]:
        bucket, key = split_s3(prefix)
        token: str | None = None
        while True:
            kw: dict[str, Any] = {"Bucket": bucket, "Prefix": key,
                                  "MaxKeys": self.options.list_page_size}
            if token:
                kw["ContinuationToken"] = token
            page = self._wrap(prefix, "LIST", lambda kw=kw: self.client.list_objects_v2(**kw))
            for obj in page.get("Contents", []):
                if obj["Key"].endswith("/"):
                    continue  # folder markers some tools create
                yield ObjectInfo(f"s3://{bucket}/{obj['Key']}", int(obj["Size"]),
                                 obj["LastModified"].timestamp())
            if not page.get("IsTruncated"):
                return
            token = page["NextContinuationToken"]

    def delete(self, uri: str) -> None:
        bucket, key = split_s3(uri)
        self._wrap(uri, "DELETE", lambda: self.client.delete_object(Bucket=bucket, Key=key))

    def ensure_bucket(self, uri: str) -> None:
        """Create the bucket of `uri` if it is missing (tests and first runs on a fresh store)."""
        from botocore.exceptions import ClientError

        bucket, _ = split_s3(uri)
        try:
            self.client.head_bucket(Bucket=bucket)
        except ClientError:
            self.client.create_bucket(Bucket=bucket)


class SeekableRaw(io.RawIOBase):
    """Read-only seekable raw file of a known size: the position bookkeeping shared by
    `RangedReader` and the archive's fetched-span file, which differ only in `read`.
    Subclasses set `self._size` and implement `read`."""

    pos = 0
    _size = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.pos, io.SEEK_END: self._size}[whence]
        self.pos = max(0, base + offset)
        return self.pos

    def size(self) -> int:
        return self._size

    def readinto(self, b: Any) -> int:
        data = self.read(len(b))
        b[: len(data)] = data
        return len(data)


class RangedReader(SeekableRaw):
    """Read-only seekable file over `get_range`, counting bytes and requests (for reports)."""

    def __init__(self, storage: Storage, uri: str, size: int) -> None:
        super().__init__()
        self.storage, self.uri, self._size = storage, uri, size
        self.pos = 0
        self.bytes_read = 0
        self.requests = 0

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            n = self._size - self.pos
        n = max(0, min(n, self._size - self.pos))
        if n == 0:
            return b""
        data = self.storage.get_range(self.uri, self.pos, n)
        self.pos += n
        self.bytes_read += n
        self.requests += 1
        return data


_cache: dict[tuple, Storage] = {}
_cache_lock = threading.Lock()


def open_storage(uri: str, options: StorageOptions | dict | None = None) -> Storage:
    """The backend for `uri` (cached per process and options: boto3 clients are costly)."""
    opts = StorageOptions.from_any(options)
    scheme = "s3" if is_s3(str(uri)) else "local"
    key = (scheme, repr(opts)) if scheme == "s3" else ("local",)
    with _cache_lock:
        st = _cache.get(key)
        if st is None:
            st = S3Storage(opts) if scheme == "s3" else LocalStorage()
            _cache[key] = st
        return st
