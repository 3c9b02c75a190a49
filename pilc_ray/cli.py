"""`pilc` command line: codec tools (encode, decode, info, train, bench) and the demo job."""

from __future__ import annotations

import argparse
import json
import runpy
import sys
import time
from pathlib import Path

import codec
from codec.errors import CodecError
from codec.layout import DEFAULT_TILE, TILE_SIZES


def _cmd_encode(a: argparse.Namespace) -> int:
    blob = codec.encode(
        codec.load_image(a.input), fallback=a.fallback, vq=a.vq, tile=a.tile, device=a.device,
        threads=a.threads,
    )  # fmt: skip
    Path(a.output).write_bytes(blob)
    info = codec.info(blob)
    raw = info["width"] * info["height"]
    print(
        f"{a.input} -> {a.output}: {len(blob)} bytes, codec {info['codec']}, "
        f"{8 * len(blob) / raw:.3f} bits/pixel"
    )
    return 0


def _cmd_decode(a: argparse.Namespace) -> int:
    img = codec.decode_image(Path(a.input).read_bytes(), device=a.device, threads=a.threads)
    Path(a.output).write_bytes(codec.to_png_bytes(img))
    print(f"{a.input} -> {a.output}: {img.mode} {img.pixels.shape}")
    return 0


def _cmd_info(a: argparse.Namespace) -> int:
    print(json.dumps(codec.info(Path(a.blob).read_bytes()), indent=2))
    return 0


def _cmd_train(a: argparse.Namespace) -> int:
    from codec.train import train

    print(train(a))
    return 0


def _cmd_bench(a: argparse.Namespace) -> int:
    script = Path(__file__).resolve().parent.parent / "benchmarks" / "peers.py"
    if not script.exists():
        print("pilc bench needs the source checkout (benchmarks/peers.py)", file=sys.stderr)
        return 2
    sys.argv = [str(script), *a.args]
    runpy.run_path(str(script), run_name="__main__")
    return 0


def _cmd_demo(a: argparse.Namespace) -> int:
    from pilc_ray.samples import sample_images

    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    images = sample_images(a.count)
    start = time.perf_counter()
    blobs = codec.encode_batch([img for _, img in images])
    enc = time.perf_counter() - start
    start = time.perf_counter()
    decoded = codec.decode_batch(blobs)
    dec = time.perf_counter() - start
    raw = sum(img.pixels.nbytes for _, img in images)
    for (name, img), blob, back in zip(images, blobs, decoded, strict=True):
        if not (back == img.pixels).all():
            raise SystemExit(f"round trip failed for {name}")
        (out / f"{name}.pilc").write_bytes(blob)
    total = sum(len(b) for b in blobs)
    print(
        f"{len(images)} images, {raw} raw bytes -> {total} bytes "
        f"({8 * total / raw:.3f} bpsp), encode {raw / enc / 1e6:.1f} MB/s, "
        f"decode {raw / dec / 1e6:.1f} MB/s, all round trips exact; blobs in {out}"
    )
    return 0


def _cmd_compress(a: argparse.Namespace) -> int:
    from pilc_ray.jobcli import run_compress

    return run_compress(a)


def _cmd_samples(a: argparse.Namespace) -> int:
    from pilc_ray.jobcli import write_samples

    paths = write_samples(a.out, a.count)
    print(f"wrote {len(paths)} sample images under {a.out}")
    return 0


def _cmd_lookup(a: argparse.Namespace) -> int:
    from pilc_ray.jobcli import run_lookup

    return run_lookup(a)


def _cmd_verify(a: argparse.Namespace) -> int:
    from pilc_ray.jobcli import run_verify

    return run_verify(a)


def _cmd_get(a: argparse.Namespace) -> int:
    from pilc_ray.archive import ArchiveError, json_row, open_archive, render
    from pilc_ray.jobcli import _store_options

    try:
        archive = open_archive(a.index, _store_options(a))
        if a.meta:
            print(json.dumps(json_row(archive.meta(a.id)), indent=2))
            return 0
        fmt = a.format or ("npy" if str(a.output).endswith(".npy") else "png")
        body = render(archive.image(a.id), fmt).body
    except (ArchiveError, FileNotFoundError) as e:
        print(f"pilc get: {e}", file=sys.stderr)
        return 1
    if a.output == "-":
        sys.stdout.buffer.write(body)
    else:
        Path(a.output).write_bytes(body)
        print(f"{a.id} -> {a.output} ({fmt}, {len(body)} bytes)", file=sys.stderr)
    return 0


def _cmd_ls(a: argparse.Namespace) -> int:
    from pilc_ray.archive import json_row, open_archive
    from pilc_ray.jobcli import _store_options

    cols = ["width", "height", "mode", "codec", "compressed_bytes"] if a.long or a.json else []
    try:
        rows = open_archive(a.index, _store_options(a)).iter_rows(
            start=a.start, prefix=a.prefix, limit=a.limit, columns=cols)
        for r in rows:
            if a.json:
                line = json.dumps(json_row(r))
            elif a.long:
                line = (f"{r['id']}\t{r['width']}x{r['height']}\t{r['mode']}\t{r['codec']}\t"
                        f"{r['compressed_bytes']}")
            else:
                line = r["id"]
            print(line)
    except BrokenPipeError:  # `pilc ls INDEX | head`
        sys.stderr.close()
    except FileNotFoundError as e:
        print(f"pilc ls: {e}", file=sys.stderr)
        return 1
    return 0


def _cmd_serve(a: argparse.Namespace) -> int:
    from pilc_ray.service import run_server

    return run_server(a)


def _add_retrieval_commands(sub: argparse._SubParsersAction) -> None:
    from pilc_ray.jobcli import add_store_arguments
    from pilc_ray.service import add_serve_arguments

    g = sub.add_parser("get", help="one image from a job's output (index lookup + one read)")
    g.add_argument("index", help="job output (folder or s3:// prefix) or its index.parquet")
    g.add_argument("id")
    g.add_argument("-o", "--output", default="-", help="file to write ('-': stdout)")
    g.add_argument("--format", choices=("png", "raw", "npy"),
                   help="default: npy for a .npy output, else png")
    g.add_argument("--meta", action="store_true", help="print the index row as JSON instead")
    add_store_arguments(g)
    g.set_defaults(fn=_cmd_get)
    ls = sub.add_parser("ls", help="list indexed ids in order (streams row groups)")
    ls.add_argument("index", help="job output (folder or s3:// prefix) or its index.parquet")
    ls.add_argument("--prefix", help="only ids starting with this")
    ls.add_argument("--start", help="first id (inclusive)")
    ls.add_argument("--limit", type=int, help="at most this many rows")
    ls.add_argument("-l", "--long", action="store_true", help="id, size, mode, codec, bytes")
    ls.add_argument("--json", action="store_true", help="one JSON object per line")
    add_store_arguments(ls)
    ls.set_defaults(fn=_cmd_ls)
    s = sub.add_parser("serve", help="HTTP service for single images (FastAPI + uvicorn)")
    add_serve_arguments(s)
    add_store_arguments(s)
    s.set_defaults(fn=_cmd_serve)


def build_parser() -> argparse.ArgumentParser:
    from codec.train import add_arguments

    p = argparse.ArgumentParser(prog="pilc", description="learned lossless image compression")
    sub = p.add_subparsers(dest="command", required=True)
    e = sub.add_parser("encode", help="compress one image file to a blob")
    e.add_argument("input")
    e.add_argument("output")
    e.add_argument("--fallback", choices=("auto", "always", "never"), default="auto")
    e.add_argument(
        "--vq", action="store_true", help="send VQ-VAE side information (costs bytes; FORMAT.md)"
    )
    e.add_argument(
        "--tile",
        type=int,
        choices=TILE_SIZES,
        default=DEFAULT_TILE,
        help="tile side: 256 (fewer bytes) or 128 (4x more independent streams)",
    )
    e.set_defaults(fn=_cmd_encode)
    d = sub.add_parser("decode", help="decompress a blob to PNG")
    d.add_argument("input")
    d.add_argument("output")
    d.set_defaults(fn=_cmd_decode)
    for cmd in (e, d):
        cmd.add_argument("--device", choices=("auto", "cpu", "cuda"), default=None,
                         help="where the pixel stage runs (default: PILC_DEVICE, else auto: "
                              "CUDA where CuPy sees a GPU); every device gives the same bytes")
        cmd.add_argument("--threads", type=int, default=None,
                         help="CPU threads for the kernels (default: the CPUs this process may "
                              "use, or PILC_THREADS)")
    i = sub.add_parser("info", help="print a blob's header")
    i.add_argument("blob")
    i.set_defaults(fn=_cmd_info)
    t = sub.add_parser("train", help="train the model and export shipped weights")
    add_arguments(t)
    t.set_defaults(fn=_cmd_train)
    b = sub.add_parser("bench", help="side-by-side benchmark against peer codecs")
    b.add_argument("args", nargs=argparse.REMAINDER)
    b.set_defaults(fn=_cmd_bench)
    m = sub.add_parser("demo", help="compress and verify generated sample images")
    m.add_argument("--out", default="out/demo")
    m.add_argument("--count", type=int, default=12)
    m.set_defaults(fn=_cmd_demo)
    from pilc_ray.jobcli import add_compress_arguments, add_store_arguments

    c = sub.add_parser("compress", help="batch job: compress a folder/manifest/S3 prefix on Ray")
    add_compress_arguments(c)
    c.set_defaults(fn=_cmd_compress)
    s = sub.add_parser("samples", help="write generated sample images (for the first job)")
    s.add_argument("out")
    s.add_argument("--count", type=int, default=24)
    s.set_defaults(fn=_cmd_samples)
    lk = sub.add_parser("lookup", help="print one image's index row (reads one row group)")
    lk.add_argument("dest", help="job output (folder or s3:// prefix) or its index.parquet")
    lk.add_argument("id")
    lk.add_argument("--output", help="also decode the image and write it here as PNG")
    add_store_arguments(lk)
    lk.set_defaults(fn=_cmd_lookup)
    v = sub.add_parser("verify", help="decode every indexed image alone and check checksums")
    v.add_argument("dest")
    add_store_arguments(v)
    v.set_defaults(fn=_cmd_verify)
    _add_retrieval_commands(sub)
    from pilc_ray.report_cli import add_report_arguments, run_report

    rp = sub.add_parser("report", help="job report (terminal, --html, --json) from an index")
    add_report_arguments(rp)
    rp.set_defaults(fn=run_report)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.fn(args)
    except CodecError as e:
        print(f"pilc: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
