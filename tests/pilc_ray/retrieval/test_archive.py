"""Single-image retrieval (`pilc_ray.retrieval.archive`): exact pixels, read counts, bad ids,
corruption.

Archives are written by the job's own worker code (`BatchCompressor` -> shards, `PartWriter` ->
parts, `compact` -> index), in-process so no Ray start is paid here; S3 runs on moto's server.
"""

from __future__ import annotations

import io
import logging
import shutil
import threading
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image, ImageCms

import codec
import pilc_ray
from codec.imagefile import RasterImage
from pilc_ray import index as ix
from pilc_ray import testing
from pilc_ray.cli import main as pilc_main
from pilc_ray.job.sources import Item
from pilc_ray.job.worker import BatchCompressor, WorkerConfig
from pilc_ray.retrieval.archive import (
    Archive,
    CorruptImage,
    ImageNotFound,
    ImageTooLarge,
    InvalidId,
    LRUCache,
    UnsupportedFormat,
    open_archive,
    validate_id,
)

BAD_IDS = ["", "../etc/passwd", "a/../../b", "photos/./a.png", "..", "a\x00b", "a\nb",
           "a\\..\\b", "x" * 1025]


def sample_set(seed: int = 0, extra: int = 6) -> dict[str, RasterImage | bytes]:
    """Mixed modes and metadata (8/16-bit, alpha, palette, ICC, text) plus one JPEG file."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:40, 0:56]
    base = ((x * 3 + y * 5) % 256).astype(np.uint8)
    noisy = (base + rng.integers(0, 8, base.shape)).astype(np.uint8)
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    rgb = np.stack([noisy, base, 255 - noisy], -1)
    out: dict[str, RasterImage | bytes] = {
        "photos/a.png": RasterImage(rgb, "RGB", icc_profile=icc, text={"Title": "a"}),
        "photos/b.png": RasterImage(noisy, "L"),
        "photos/c.png": RasterImage(np.dstack([rgb, base]), "RGBA"),
        "graphics/d.png": RasterImage((noisy.astype(np.uint16) * 257), "L;16"),
        "graphics/e.png": RasterImage((base // 64).astype(np.uint8), "P",
                                      palette=bytes(range(12))),
    }
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "JPEG", quality=90)
    out["photos/g.jpg"] = buf.getvalue()
    for i in range(extra):
        out[f"misc/{i:03d}.png"] = RasterImage(np.roll(noisy, i, axis=1)[:24, :32], "L")
    return out


def build_archive(dest: str, images: dict, storage_options: dict | None = None,
                  batch: int = 4, row_group_size: int = 3, run_id: str = "r1") -> str:
    """Compress `images` into `dest` exactly as the job does (shards + compacted index)."""
    comp = BatchCompressor(WorkerConfig(dest=dest, fallback="never",
                                        storage_options=storage_options or {}))
    writer = ix.PartWriter(dest, run_id, storage_options)
    items = [Item(k, f"mem://{k}", -1, v) for k, v in images.items()]
    for i in range(0, len(items), batch):
        out = comp.compress(items[i : i + batch])
        assert not out["errors"], out["errors"]
        writer.add(out["rows"], out["errors"])
    writer.flush()
    ix.compact(dest, storage_options, row_group_size=row_group_size)
    return dest


def expected(value: RasterImage | bytes) -> RasterImage:
    return codec.load_image(value) if isinstance(value, bytes) else value


@pytest.fixture(scope="module")
def images() -> dict:
    return sample_set()


@pytest.fixture(scope="module")
def dest(tmp_path_factory, images) -> str:
    return build_archive(str(tmp_path_factory.mktemp("archive") / "job"), images)


def test_every_image_back_exactly_with_metadata(dest, images):
    archive = pilc_ray.open_archive(dest)
    assert len(archive) == len(images)
    for image_id, value in images.items():
        want = expected(value)
        img = archive.image(image_id)
        assert img == want  # pixels, mode, palette, ICC and text
        assert np.array_equal(archive.get(image_id), want.pixels)
        px, row = archive.get_with_meta(image_id)
        assert np.array_equal(px, want.pixels) and row["id"] == image_id
        assert row["passthrough"] == isinstance(value, bytes)
        assert (row["height"], row["width"]) == want.pixels.shape[:2]
    png = archive.get_png("photos/a.png")
    assert codec.load_image(png) == images["photos/a.png"]  # ICC and text survive the PNG
    assert codec.load_image(archive.get_png("graphics/d.png")) == images["graphics/d.png"]
    pixels = archive.get_many(["photos/b.png", "misc/003.png", "photos/g.jpg"])
    assert np.array_equal(pixels[1], images["misc/003.png"].pixels)


def test_dest_or_index_file_both_open(dest):
    a = open_archive(dest)
    b = open_archive(str(Path(dest) / "index" / "index.parquet"))
    assert a.uri == b.uri and a.meta("photos/b.png") == b.meta("photos/b.png")
    with pytest.raises(FileNotFoundError):
        open_archive(str(Path(dest) / "nothing-here"))


def test_one_row_group_and_one_blob_read_per_uncached_image(dest):
    archive = Archive(dest)
    assert archive.stats()["index_row_groups"] >= 4  # lookups really have to choose
    opened = archive.stats()
    assert opened["index_opens"] == 1 and opened["row_group_reads"] == 0
    archive.get("misc/004.png")
    s = archive.stats()
    assert (s["row_group_reads"], s["blob_reads"]) == (1, 1)
    size = (Path(dest) / "index" / "index.parquet").stat().st_size
    assert s["index_bytes"] - opened["index_bytes"] < size / 2
    archive.get("misc/004.png")  # blob and row group cached: no read at all
    s2 = archive.stats()
    assert (s2["row_group_reads"], s2["blob_reads"]) == (1, 1)
    assert s2["blob_cache"]["hits"] == 1 and s2["decodes"] == 2
    # groups of 3 sorted ids: [.., misc/004, misc/005, photos/a], [photos/b, ..]
    archive.locate("photos/a.png")  # the same row group: cached
    assert archive.stats()["row_group_reads"] == 1
    archive.locate("photos/b.png")  # the next one
    assert archive.stats()["row_group_reads"] == 2
    row = archive.meta("photos/b.png")  # every column: decoded (and cached) apart
    assert archive.stats()["row_group_reads"] == 3 and row["source_uri"] == "mem://photos/b.png"
    assert set(archive.locate("photos/b.png")) < set(row)
    archive.meta("photos/c.png")
    assert archive.stats()["row_group_reads"] == 3 and archive.stats()["blob_reads"] == 1


@pytest.mark.parametrize("bad", BAD_IDS)
def test_bad_ids_rejected_before_any_read(dest, bad):
    archive = Archive(dest)
    before = archive.stats()
    with pytest.raises(InvalidId):
        archive.get(bad)
    with pytest.raises(InvalidId):
        validate_id(bad)
    after = archive.stats()
    assert (after["row_group_reads"], after["blob_reads"]) == (0, 0)
    assert after["index_bytes"] == before["index_bytes"]
    assert bad not in archive


def test_unknown_ids_are_not_found_without_blob_reads(dest):
    archive = Archive(dest)
    for image_id in ["photos/zzz.png", "/etc/passwd", "s3://other-bucket/key", "misc/003.pn"]:
        with pytest.raises(ImageNotFound) as e:
            archive.get(image_id)
        assert isinstance(e.value, KeyError) and image_id in str(e.value)
    assert archive.stats()["blob_reads"] == 0
    assert validate_id("/abs/path/from/a/manifest.png")  # manifest URIs are legal ids


def test_limits_refuse_before_reading_the_blob(dest):
    from codec.imagefile import DEFAULT_MAX_SAMPLES

    # the default is the one limit the job ingested under: what it indexed can be read back
    assert Archive(dest).max_image_samples == DEFAULT_MAX_SAMPLES
    small = Archive(dest, max_image_samples=100)
    with pytest.raises(ImageTooLarge):
        small.get("photos/a.png")
    tiny = Archive(dest, max_blob_bytes=10)
    with pytest.raises(ImageTooLarge):
        tiny.get_png("photos/b.png")
    assert small.stats()["blob_reads"] == 0 and tiny.stats()["blob_reads"] == 0


def flip_byte_in_blob(row: dict) -> None:
    """Flip one byte in the middle of a stored blob's coded pixels (in place, in its shard)."""
    path = Path(row["blob_uri"])
    data = bytearray(path.read_bytes())
    blob = bytes(data[row["offset"] : row["offset"] + row["length"]])
    payload = codec.info(blob)["payload_bytes"]
    data[row["offset"] + row["length"] - payload // 2] ^= 0x5A
    path.write_bytes(bytes(data))


def test_corrupt_blob_raises_and_is_logged_never_wrong_pixels(tmp_path, images, caplog):
    dest = build_archive(str(tmp_path / "job"), images)
    archive = Archive(dest)
    row = archive.meta("photos/a.png")
    flip_byte_in_blob(row)
    with caplog.at_level(logging.ERROR, logger="pilc_ray.retrieval.archive"):
        with pytest.raises(CorruptImage, match="failed verification"):
            archive.get("photos/a.png")
    assert any("photos/a.png" in r.getMessage() and r.levelno == logging.ERROR
               for r in caplog.records)
    with pytest.raises(CorruptImage):
        archive.get_png("photos/a.png")
    # the batch path isolates it: the others in the same batch still come back
    got = archive.images(["photos/a.png", "photos/b.png", "nope/x.png"])
    assert isinstance(got[0], CorruptImage) and isinstance(got[2], ImageNotFound)
    assert got[1] == images["photos/b.png"]
    assert archive.stats()["corrupt"] >= 3
    reads = archive.stats()["blob_reads"]
    flip_byte_in_blob(row)  # repaired: the bad blob was not kept in the cache
    assert archive.image("photos/a.png") == images["photos/a.png"]
    assert archive.stats()["blob_reads"] == reads + 1


def test_original_is_the_stored_jpeg_checked_and_refused_for_coded_images(tmp_path, images):
    dest = build_archive(str(tmp_path / "job"), images)
    archive = Archive(dest)
    row, data = archive.original("photos/g.jpg")
    assert data == images["photos/g.jpg"] and row["codec"] == "jpeg" and row["passthrough"]
    assert archive.stats()["decodes"] == 0  # given back as stored, never decoded
    with pytest.raises(UnsupportedFormat, match="original file is not stored"):
        archive.original("photos/a.png")
    assert UnsupportedFormat.status == 406
    path = Path(row["blob_uri"])  # one flipped byte in the stored JPEG: refused, and logged
    raw = bytearray(path.read_bytes())
    raw[row["offset"] + row["length"] // 2] ^= 0x01
    path.write_bytes(bytes(raw))
    fresh = Archive(dest)
    with pytest.raises(CorruptImage, match="index checksum"):
        fresh.original("photos/g.jpg")
    assert fresh.stats()["corrupt"] == 1


def test_blob_of_another_image_is_caught_by_the_index_checksum(tmp_path, images):
    """A valid blob in the wrong place (index points at a neighbour) must not be served."""
    dest = build_archive(str(tmp_path / "job"), images)
    path = Path(dest) / ix.INDEX_FILE
    t = pq.read_table(path)
    ids = t.column("id").to_pylist()
    a, b = ids.index("misc/001.png"), ids.index("misc/002.png")
    offsets, lengths = t.column("offset").to_pylist(), t.column("length").to_pylist()
    offsets[a], lengths[a] = offsets[b], lengths[b]
    t = t.set_column(t.schema.get_field_index("offset"), "offset", pa.array(offsets, pa.int64()))
    t = t.set_column(t.schema.get_field_index("length"), "length", pa.array(lengths, pa.int64()))
    pq.write_table(t, path, row_group_size=3, write_statistics=["id"])
    archive = Archive(dest)
    with pytest.raises(CorruptImage, match="index checksum"):
        archive.get("misc/001.png")
    assert np.array_equal(archive.get("misc/002.png"), images["misc/002.png"].pixels)


def test_iter_rows_streams_in_order_with_start_prefix_limit(dest, images):
    archive = Archive(dest)
    ids = sorted(images)
    assert [r["id"] for r in archive.iter_rows()] == ids
    assert [r["id"] for r in archive.iter_rows(prefix="misc/")] == [i for i in ids
                                                                   if i.startswith("misc/")]
    assert [r["id"] for r in archive.iter_rows(start="misc/002.png", limit=2)] == [
        "misc/002.png", "misc/003.png"]
    assert [r["id"] for r in archive.iter_rows(start="photos/b", prefix="photos/")] == [
        "photos/b.png", "photos/c.png", "photos/g.jpg"]
    assert list(archive.iter_rows(prefix="zzz")) == []
    assert list(archive.iter_rows(limit=0)) == []
    row = next(archive.iter_rows(prefix="graphics/d", columns=["width", "mode"]))
    assert row == {"id": "graphics/d.png", "width": 56, "mode": "L;16"}


def test_new_compaction_is_picked_up(tmp_path, images):
    dest = build_archive(str(tmp_path / "job"), dict(list(images.items())[:4]))
    archive = Archive(dest, recheck_s=0)
    assert "misc/000.png" not in archive
    build_archive(dest, {"misc/000.png": images["misc/000.png"]}, run_id="r2")
    assert np.array_equal(archive.get("misc/000.png"), images["misc/000.png"].pixels)
    assert archive.stats()["index_opens"] == 2


def test_parallel_threads_get_exact_pixels(dest, images):
    archive = Archive(dest, blob_cache_bytes=0, index_cache_bytes=0)  # every call reads
    ids = [k for k in images if not k.endswith(".jpg")]
    errors: list[BaseException] = []

    def worker(k: int) -> None:
        try:
            for j in range(6):
                image_id = ids[(k + j) % len(ids)]
                assert np.array_equal(archive.get(image_id), images[image_id].pixels)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert archive.stats()["blob_reads"] == 36


def test_lru_cache_is_bounded_and_reloads_after_failure():
    cache: LRUCache[bytes] = LRUCache(10, len)
    for k in "abc":
        cache.put(k, b"xxxx")
    assert cache.bytes == 8 and cache.get("a") is None and cache.evictions == 1
    cache.put("big", b"y" * 11)  # bigger than the cache: not kept
    assert cache.get("big") is None and cache.bytes == 8
    with pytest.raises(OSError):
        cache.get_or_load("k", lambda: (_ for _ in ()).throw(OSError("boom")))
    assert cache.get_or_load("k", lambda: b"ok") == (b"ok", False)
    assert cache.get_or_load("k", lambda: b"other") == (b"ok", True)


def test_cli_get_and_ls(dest, images, tmp_path, capsys):
    out = tmp_path / "a.png"
    assert pilc_main(["get", dest, "photos/a.png", "-o", str(out)]) == 0
    assert codec.load_image(out.read_bytes()) == images["photos/a.png"]
    assert pilc_main(["get", dest, "misc/001.png", "-o", str(tmp_path / "m.npy")]) == 0
    assert np.array_equal(np.load(tmp_path / "m.npy"), images["misc/001.png"].pixels)
    assert pilc_main(["get", dest, "photos/none.png", "-o", str(tmp_path / "n.png")]) == 1
    assert pilc_main(["get", dest, "../x", "-o", str(tmp_path / "n.png")]) == 1
    assert not (tmp_path / "n.png").exists()
    capsys.readouterr()
    assert pilc_main(["ls", dest, "--prefix", "misc/", "--limit", "3"]) == 0
    assert capsys.readouterr().out.split() == ["misc/000.png", "misc/001.png", "misc/002.png"]
    assert pilc_main(["ls", str(Path(dest) / ix.INDEX_FILE), "--start", "photos/c", "-l"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].split("\t") == ["photos/c.png", "56x40", "RGBA", "learned",
                                    lines[0].split("\t")[-1]]
    assert len(lines) == 2


def test_s3_archive_reads_one_row_group_and_one_blob(tmp_path, images):
    srv = testing.moto_s3()
    bucket = srv.make_bucket()
    opts = srv.options()
    dest = build_archive(f"s3://{bucket}/jobs/one", images, opts)
    archive = open_archive(dest, opts)
    gets: list[str] = []

    def count(params, **_):  # every real HTTP request botocore sends to the server
        gets.append(params.get("method", "?"))

    events = archive.storage.client.meta.events
    events.register("before-call.s3.GetObject", count)
    try:
        assert np.array_equal(archive.get("misc/002.png"), images["misc/002.png"].pixels)
        assert len(gets) == 2  # one ranged GET of a row group, one of the blob
        assert np.array_equal(archive.get("misc/002.png"), images["misc/002.png"].pixels)
        assert len(gets) == 2
        assert archive.image("photos/a.png") == images["photos/a.png"]
        assert len(gets) == 4
    finally:
        events.unregister("before-call.s3.GetObject", count)
    assert [r["id"] for r in archive.iter_rows(prefix="photos/")] == [
        "photos/a.png", "photos/b.png", "photos/c.png", "photos/g.jpg"]
    shutil.rmtree(tmp_path, ignore_errors=True)
