"""Storage backends against real S3-compatible servers on loopback (moto; SeaweedFS with auth)."""

from __future__ import annotations

import hashlib
import http.client
import io
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pilc_ray import storage as st
from pilc_ray import testing

MIB = 1 << 20


def test_put_get_range_stat_list_delete(s3_server, s3_bucket):
    s3 = st.S3Storage(st.StorageOptions(**s3_server.options(list_page_size=2)))
    base = f"s3://{s3_bucket}/pre"
    for i in range(5):
        s3.put(f"{base}/k{i}.bin", bytes(range(i, i + 100)))
    s3.put(f"s3://{s3_bucket}/other/x", b"no")
    assert s3.get(f"{base}/k3.bin") == bytes(range(3, 103))
    assert s3.get_range(f"{base}/k3.bin", 10, 5) == bytes(range(13, 18))
    assert s3.stat(f"{base}/k1.bin").size == 100
    listed = [o.uri for o in s3.list(base + "/")]  # page size 2: three LIST pages
    assert listed == [f"{base}/k{i}.bin" for i in range(5)]
    with pytest.raises(st.NotFound):
        s3.get(f"{base}/missing")
    assert not s3.exists(f"{base}/missing")
    with pytest.raises(st.StorageError):
        s3.get_range(f"{base}/k1.bin", 90, 20)  # past the end: clear error, not short data
    s3.delete(f"{base}/k0.bin")
    assert not s3.exists(f"{base}/k0.bin")


def test_multipart_upload_and_ranged_parquet_read(s3_server, s3_bucket, tmp_path):
    opts = st.StorageOptions(**s3_server.options(multipart_threshold=5 * MIB, part_size=5 * MIB))
    s3 = st.S3Storage(opts)
    data = hashlib.sha256(b"seed").digest() * (11 * MIB // 32 + 7)
    uri = f"s3://{s3_bucket}/big/blob.bin"
    s3.put(uri, data)
    head = s3.client.head_object(Bucket=s3_bucket, Key="big/blob.bin")
    assert head["ETag"].strip('"').endswith("-3")  # three parts: a real multipart upload
    assert s3.get(uri) == data
    assert s3.get_range(uri, 6 * MIB - 3, 10) == data[6 * MIB - 3 : 6 * MIB + 7]
    # a Parquet file read through ranged GETs reads only what it needs
    n = 200_000
    table = pa.table({"id": [f"{i:08d}" for i in range(n)], "v": list(range(n))})
    path = tmp_path / "t.parquet"
    pq.write_table(table, path, row_group_size=10_000)
    s3.put_file(path, f"s3://{s3_bucket}/t.parquet")
    f = s3.open_read(f"s3://{s3_bucket}/t.parquet")
    got = pq.ParquetFile(f).read_row_group(7)
    assert got.column("v")[0].as_py() == 70_000
    assert f.bytes_read < path.stat().st_size / 5


class _FlakyProxy(BaseHTTPRequestHandler):
    """Answers the first `fail` requests with S3 throttling/5xx, then forwards to the server."""

    upstream: tuple[str, int]
    plan: list[int]
    seen: list[int]

    def _handle(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.plan:
            status = self.plan.pop(0)
            self.seen.append(status)
            code = "SlowDown" if status == 503 else "InternalError"
            msg = f"<Error><Code>{code}</Code><Message>injected</Message></Error>".encode()
            self.send_response(status)
            self.send_header("Content-Length", str(len(msg)))
            self.end_headers()
            self.wfile.write(msg)
            return
        conn = http.client.HTTPConnection(*self.upstream, timeout=30)
        conn.request(self.command, self.path, body=body or None, headers=dict(self.headers))
        resp = conn.getresponse()
        data = resp.read()
        self.send_response(resp.status)
        for k, v in resp.getheaders():
            if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        conn.close()

    do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _handle

    def log_message(self, *a) -> None:
        pass


def _proxy(upstream_url: str, plan: list[int]):
    host, port = upstream_url.removeprefix("http://").split(":")
    handler = type("H", (_FlakyProxy,), {"upstream": (host, int(port)), "plan": plan,
                                         "seen": []})
    srv = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv, handler


@pytest.mark.parametrize("where", ["local", "moto", "seaweed"])
def test_conditional_replace_and_delete_take_only_the_version_read(where, tmp_path):
    """put_if_match / delete_if_match (what a lease takeover and renewal are built on): they
    act only on the version whose tag was read, so of two writers that read the same version
    one wins; a missing object is no match."""
    if where == "local":
        store, base = st.LocalStorage(), str(tmp_path)
    else:
        server = testing.moto_s3() if where == "moto" else testing.seaweed_s3()
        store = st.S3Storage(st.StorageOptions(**server.options()))
        base = f"s3://{server.make_bucket()}"
    uri = f"{base}/lease.json"
    assert store.put_if_match(uri, b"x", "no-such-tag") is None and not store.exists(uri)
    store.put(uri, b"stale")
    data, tag = store.get_versioned(uri)
    assert data == b"stale"
    new_tag = store.put_if_match(uri, b"first", tag)
    assert new_tag and new_tag != tag and store.get_versioned(uri) == (b"first", new_tag)
    assert store.put_if_match(uri, b"second", tag) is None  # the same stale version: lost
    assert store.get(uri) == b"first"
    assert not store.delete_if_match(uri, tag) and store.exists(uri)
    assert store.delete_if_match(uri, new_tag) and not store.exists(uri)
    assert not store.delete_if_match(uri, new_tag)
    if where == "local":  # the lock file is hidden: listings and the job never see it
        assert [p.name for p in tmp_path.iterdir() if not p.name.startswith(".")] == []


def test_throttling_and_5xx_are_retried_with_backoff():
    moto = testing.moto_s3()
    bucket = moto.make_bucket()
    srv, handler = _proxy(moto.endpoint_url, [503, 500])
    try:
        url = f"http://127.0.0.1:{srv.server_address[1]}"
        s3 = st.S3Storage(st.StorageOptions(endpoint_url=url, region=testing.REGION,
                                            max_attempts=5))
        s3.put(f"s3://{bucket}/k", b"payload")  # two failures, then through
        assert handler.seen == [503, 500]
        handler.plan.extend([502])
        assert s3.get_range(f"s3://{bucket}/k", 1, 3) == b"ayl"
        handler.plan.extend([503] * 10)
        impatient = st.S3Storage(st.StorageOptions(endpoint_url=url, region=testing.REGION,
                                                   max_attempts=2))
        with pytest.raises(st.StorageError, match="SlowDown|503|reduce|Reduce"):
            impatient.get(f"s3://{bucket}/k")
    finally:
        srv.shutdown()


def test_seaweed_rejects_bad_credentials_clearly():
    srv = testing.seaweed_s3()
    bucket = srv.make_bucket()
    s3 = st.S3Storage(st.StorageOptions(**srv.options(max_attempts=1, extra={
        "aws_access_key_id": testing.ACCESS_KEY, "aws_secret_access_key": "wrong"})))
    with pytest.raises(st.StorageError, match="SignatureDoesNotMatch|AccessDenied|InvalidAccess"):
        s3.put(f"s3://{bucket}/x", b"1")


def test_local_files_get_the_usual_mode_not_mkstemps_0600(tmp_path):
    """job.json, reports and shards were written 0600 (mkstemp's mode): others on the machine
    could not read an archive. They get what any new file gets under the umask."""
    import os

    mask = os.umask(0o022)
    os.umask(mask)
    loc = st.LocalStorage()
    src = tmp_path / "src.bin"
    src.write_bytes(b"x")
    loc.put(str(tmp_path / "put.json"), b"{}")
    loc.put_file(src, str(tmp_path / "file.parquet"))
    assert loc.put_if_absent(str(tmp_path / "lease.json"), b"{}")
    for name in ("put.json", "file.parquet", "lease.json"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o666 & ~mask, name


def test_local_storage_is_atomic_and_checks_ranges(tmp_path):
    loc = st.LocalStorage()
    uri = str(tmp_path / "a" / "b.bin")
    loc.put(uri, b"0123456789")
    loc.put(uri, b"abcdefghij")  # replace, never a half-written file
    assert loc.get_range(uri, 2, 3) == b"cde"
    assert [p.name for p in (tmp_path / "a").iterdir()] == ["b.bin"]
    with pytest.raises(st.StorageError):
        loc.get_range(uri, 8, 5)
    with pytest.raises(st.NotFound):
        loc.get(str(tmp_path / "nope"))
    assert st.open_storage("s3://b/k", {"endpoint_url": "http://127.0.0.1:1"}) is st.open_storage(
        "s3://b/other", st.StorageOptions(endpoint_url="http://127.0.0.1:1"))
    assert st.split_s3("s3://bucket/a/b") == ("bucket", "a/b")
    with pytest.raises(st.StorageError):
        st.local_path("gs://x/y")
    f = loc.open_read(uri)
    assert io.BufferedReader(f).read() == b"abcdefghij"
