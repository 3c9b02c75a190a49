"""What a job compresses: (id, uri) items from a folder, a manifest, an S3 prefix, or refs.

Sources are iterated lazily, so a 100-million-line manifest never sits in the driver's memory.
Ids are stable across reruns (a relative path, a key under the prefix, the manifest's id column
or URI), which is what makes resume work: the index is keyed by id.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from pilc_ray import storage as st

IMAGE_SUFFIXES = frozenset({
    ".png", ".apng", ".jpg", ".jpeg", ".jpe", ".jfif", ".tif", ".tiff", ".webp", ".bmp", ".gif",
    ".ppm", ".pgm", ".pbm", ".pnm", ".pam", ".tga", ".jxl", ".ico", ".qoi",
})
MANIFEST_SUFFIXES = (".txt", ".lst", ".csv", ".parquet", ".pq", ".manifest")


class SourceError(ValueError):
    """The source itself cannot be read (missing folder, manifest without a uri column...)."""


@dataclass(frozen=True)
class Item:
    """One image to compress. `ref` carries an object-store ref or in-memory image instead."""

    id: str
    uri: str
    size: int = -1
    ref: Any = None


class Source:
    """Lazily yields Items; `ignored` counts files skipped as not images, and `skipped` lists
    (path, reason) of what a listing found but could not take (broken or looping symlinks,
    FIFOs, sockets, devices), so nothing is left out without a trace."""

    description = "source"
    ignored = 0
    skipped: list[tuple[str, str]] = []  # noqa: RUF012 - replaced per listing, never mutated

    def __iter__(self) -> Iterator[Item]:
        raise NotImplementedError


def _is_image_name(name: str) -> bool:
    return PurePosixPath(name).suffix.lower() in IMAGE_SUFFIXES


class ListingSource(Source):
    """Every image file under a local folder or S3 prefix (recursive); id = relative path."""

    def __init__(self, root: str, options: st.StorageOptions | None = None,
                 all_files: bool = False) -> None:
        self.root = st.normalize(root)
        self.options = options
        self.all_files = all_files
        self.description = f"listing of {self.root}"
        if not st.is_s3(self.root) and not st.local_path(self.root).is_dir():
            raise SourceError(f"source folder {self.root} does not exist")

    def __iter__(self) -> Iterator[Item]:
        storage = st.open_storage(self.root, self.options)
        prefix = self.root.rstrip("/") + "/"
        self.ignored = 0
        self.skipped = []

        def skip(path: str, reason: str) -> None:
            self.ignored += 1
            self.skipped.append((path, reason))

        for obj in storage.list(prefix if st.is_s3(self.root) else self.root, on_skip=skip):
            rel = obj.uri[len(prefix):] if obj.uri.startswith(prefix) else obj.uri
            if not st.is_s3(self.root):
                rel = rel.replace(os.sep, "/")
            if not self.all_files and not _is_image_name(rel):
                self.ignored += 1
                continue
            yield Item(rel, obj.uri, obj.size)


class ManifestSource(Source):
    """A text (one URI a line), CSV or Parquet list; relative URIs resolve against its folder."""

    def __init__(self, uri: str, options: st.StorageOptions | None = None) -> None:
        self.uri = st.normalize(uri)
        self.options = options
        self.description = f"manifest {self.uri}"
        self.base = self.uri.rsplit("/", 1)[0]
        suffix = PurePosixPath(self.uri).suffix.lower()
        self.kind = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}.get(suffix, "text")

    def _resolve(self, uri: str) -> str:
        uri = uri.strip()
        if st.is_s3(uri) or uri.startswith("file://") or uri.startswith("/"):
            return st.normalize(uri)
        if "://" in uri:
            raise SourceError(f"unsupported URI scheme in manifest entry {uri!r}")
        return st.normalize(st.join(self.base, uri)) if not st.is_s3(self.base) else st.join(
            self.base, uri)

    def _open_bytes(self) -> bytes:
        try:
            return st.open_storage(self.uri, self.options).get(self.uri)
        except st.NotFound as e:
            raise SourceError(f"manifest {self.uri} does not exist") from e

    def __iter__(self) -> Iterator[Item]:
        if self.kind == "parquet":
            yield from self._parquet()
            return
        text = io.TextIOWrapper(io.BytesIO(self._open_bytes()), encoding="utf-8-sig")
        if self.kind == "csv":
            reader = csv.DictReader(text)
            fields = [f.strip().lower() for f in reader.fieldnames or []]
            if "uri" not in fields:
                raise SourceError(f"CSV manifest {self.uri} needs a 'uri' column (has {fields})")
            reader.fieldnames = fields
            for row in reader:
                uri = (row.get("uri") or "").strip()
                if uri:
                    ident = (row.get("id") or "").strip() or uri
                    yield Item(ident, self._resolve(uri))
            return
        for line in text:
            uri = line.strip()
            if uri and not uri.startswith("#"):
                yield Item(uri, self._resolve(uri))

    def _parquet(self) -> Iterator[Item]:
        import pyarrow.parquet as pq

        storage = st.open_storage(self.uri, self.options)
        try:
            pf = pq.ParquetFile(storage.open_read(self.uri))
        except st.NotFound as e:
            raise SourceError(f"manifest {self.uri} does not exist") from e
        names = [n.lower() for n in pf.schema_arrow.names]
        if "uri" not in names:
            raise SourceError(f"Parquet manifest {self.uri} needs a 'uri' column (has {names})")
        cols = [pf.schema_arrow.names[names.index("uri")]]
        if "id" in names:
            cols.append(pf.schema_arrow.names[names.index("id")])
        for batch in pf.iter_batches(batch_size=65536, columns=cols):
            uris = batch.column(0).to_pylist()
            ids = batch.column(1).to_pylist() if len(cols) > 1 else uris
            for ident, uri in zip(ids, uris, strict=True):
                if uri:
                    yield Item(str(ident) if ident not in (None, "") else uri, self._resolve(uri))


class ObjectsSource(Source):
    """Images or ObjectRefs already in the driver (from Python): a list, or a dict id -> value.

    Plain images are put in Ray's object store by the driver, so workers fetch them directly.
    """

    def __init__(self, values: Iterable[Any] | dict[str, Any]) -> None:
        self.values = values
        self.description = "in-memory images/refs"

    def __iter__(self) -> Iterator[Item]:
        pairs = self.values.items() if isinstance(self.values, dict) else (
            (f"image-{i:08d}", v) for i, v in enumerate(self.values))
        for ident, value in pairs:
            yield Item(str(ident), "ray-object://" + str(ident), -1, value)


def open_source(source: Any, options: st.StorageOptions | None = None,
                all_files: bool = False) -> Source:
    """Pick the source type: a Source, an in-memory collection, a manifest, a folder/prefix."""
    if isinstance(source, Source):
        return source
    if isinstance(source, (list, tuple, dict)):
        return ObjectsSource(source)
    uri = os.fspath(source)
    lower = uri.lower()
    if lower.endswith(MANIFEST_SUFFIXES):
        if st.is_s3(uri) or st.local_path(uri).is_file():
            return ManifestSource(uri, options)
    if st.is_s3(uri):
        return ListingSource(uri, options, all_files)
    path = st.local_path(uri)
    if path.is_file():
        raise SourceError(f"{uri} is a file but not a manifest (.txt, .csv or .parquet)")
    return ListingSource(uri, options, all_files)
