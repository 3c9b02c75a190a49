"""`pilc` command line: codec tools (encode, decode, info, train, bench) and the demo job.

Imports are lazy: each sub-command's options are added, and its modules imported, only when
that sub-command runs, so `pilc --help` does not load the codec (numpy, kernels: 1.5 s).
A user's mistake (missing or unreadable input, corrupt blob, bad output path, unknown id) ends
in one line, `pilc: error: ...`, and exit status 2 for usage errors, 1 otherwise; tracebacks
are for our bugs.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import runpy
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

# the format each file name extension stands for (".jpg": a JPEG file the job stored as-is)
EXTENSION_FORMATS = {".png": "png", ".npy": "npy", ".jpg": "jpeg", ".jpeg": "jpeg"}


class CliError(Exception):
    """A user error: printed as `pilc: error: <message>`, the process exits with `status`."""

    status = 1


class UsageError(CliError):
    """The command line asks for something impossible (exit status 2, as argparse's own)."""

    status = 2


# --------------------------------------------------------------------------------------------
# helpers


def _writable(path: str) -> Path:
    """`path` as an output file, checked before any work is done: its folder exists and can
    be written, and it is not a folder itself (else an encode would fail only at the end)."""
    p = Path(path)
    parent = p.parent
    if p.is_dir():
        raise CliError(f"cannot write {path}: it is a directory")
    if not parent.is_dir():
        raise CliError(f"cannot write {path}: no directory {str(parent)!r}")
    if not os.access(parent, os.W_OK | os.X_OK) or (p.exists() and not os.access(p, os.W_OK)):
        raise CliError(f"cannot write {path}: permission denied")
    return p


def _extension_format(path: str) -> str | None:
    """The format a file name promises by its extension, or None for a name that promises
    none (no extension, or one we do not write)."""
    return EXTENSION_FORMATS.get(Path(path).suffix.lower())


def _bpsp(nbytes: int, samples: int) -> float:
    """Bits per sub-pixel, the unit every command reports: 8 * bytes / (H * W * C)."""
    return 8 * nbytes / max(1, samples)


def _npy_bytes(pixels: Any) -> bytes:
    """A .npy file of the pixels, little-endian like `pilc get` and the service write it."""
    import numpy as np

    if pixels.dtype.itemsize > 1:
        pixels = pixels.astype(pixels.dtype.newbyteorder("<"), copy=False)
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(pixels), allow_pickle=False)
    return buf.getvalue()


# --------------------------------------------------------------------------------------------
# codec commands


def _cmd_encode(a: argparse.Namespace) -> int:
    import codec

    out = _writable(a.output)
    img = codec.load_image(a.input)
    blob = codec.encode(img, fallback=a.fallback, vq=a.vq, tile=a.tile, device=a.device,
                        threads=a.threads, effort=a.effort)
    out.write_bytes(blob)
    info = codec.info(blob)
    level = f", effort {info['effort']}" if info["codec"] == "learned" else ""
    print(f"{a.input} -> {a.output}: {len(blob)} bytes, codec {info['codec']}{level}, "
          f"{_bpsp(len(blob), img.pixels.size):.3f} bpsp")
    return 0


def _decode_format(output: str) -> str:
    """PNG or .npy by the output's extension; a blob holds pixels, so there is no JPEG (or any
    other file) to give back, and writing PNG bytes under another name would mislead."""
    fmt = _extension_format(output)
    if fmt == "jpeg":
        raise UsageError(f"cannot write {output}: a .pilc blob holds exact pixels, not a JPEG "
                         "file; name the output .png (lossless) or .npy")
    if fmt is None:
        raise UsageError(f"cannot tell the format from {output!r}: name it .png or .npy")
    return fmt


def _cmd_decode(a: argparse.Namespace) -> int:
    fmt = _decode_format(a.output)
    out = _writable(a.output)
    data = Path(a.input).read_bytes()
    import codec

    img = codec.decode_image(data, device=a.device, threads=a.threads)
    out.write_bytes(codec.to_png_bytes(img) if fmt == "png" else _npy_bytes(img.pixels))
    print(f"{a.input} -> {a.output}: {img.mode} {img.pixels.shape} ({fmt})")
    return 0


def _cmd_info(a: argparse.Namespace) -> int:
    data = Path(a.blob).read_bytes()
    import codec

    print(json.dumps(codec.info(data), indent=2))
    return 0


def _cmd_train(a: argparse.Namespace) -> int:
    from codec.train.trainer import train

    print(train(a))
    return 0


def _cmd_bench(a: argparse.Namespace) -> int:
    script = Path(__file__).resolve().parent.parent / "benchmarks" / "peers.py"
    if not script.exists():
        raise UsageError("pilc bench needs the source checkout (benchmarks/peers.py)")
    sys.argv = [str(script), *a.args]
    runpy.run_path(str(script), run_name="__main__")
    return 0


def _cmd_demo(a: argparse.Namespace) -> int:
    import codec
    from pilc_ray.samples import sample_images

    if a.count < 1:
        raise UsageError(f"--count must be at least 1, not {a.count}")
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


# --------------------------------------------------------------------------------------------
# job and retrieval commands


def _cmd_compress(a: argparse.Namespace) -> int:
    from pilc_ray.job.cli import run_compress

    return run_compress(a)


def _cmd_samples(a: argparse.Namespace) -> int:
    from pilc_ray.samples import write_samples

    paths = write_samples(a.out, a.count)
    print(f"wrote {len(paths)} sample images under {a.out}")
    return 0


def _cmd_lookup(a: argparse.Namespace) -> int:
    from pilc_ray import api
    from pilc_ray.storage_flags import store_options

    if a.output:  # writes PNG bytes: only under a .png name, and checked first
        if _extension_format(a.output) != "png":
            raise UsageError(f"pilc lookup --output writes PNG: name it .png, not {a.output!r} "
                             "(pilc get picks the format by extension)")
        _writable(a.output)
    try:
        row, blob = api.read_blob(a.dest, a.id, store_options(a))
    except KeyError:
        print(f"pilc: error: no image with id {a.id!r} in {a.dest}", file=sys.stderr)
        return 1
    print(json.dumps(row, indent=2, default=str))
    if a.output:
        import codec

        Path(a.output).write_bytes(codec.to_png_bytes(api.decode_blob(row, blob)))
        print(f"decoded to {a.output}", file=sys.stderr)
    return 0


def _cmd_verify(a: argparse.Namespace) -> int:
    from pilc_ray import api
    from pilc_ray.storage_flags import store_options

    out = api.verify(a.dest, store_options(a))
    for b in out["bad"][:20]:
        print(f"BAD {b['id']}: {b['error']}", file=sys.stderr)
    print(f"{out['ok']} images decoded alone from the index and bit-exact, "
          f"{len(out['bad'])} bad")
    return 0 if not out["bad"] else 1


def _get_format(a: argparse.Namespace, row: dict) -> str:
    """The format `pilc get` writes: --format, else what the output's extension names, else
    (stdout) the service's default. A name that promises another format is refused, never
    written with the wrong bytes."""
    from pilc_ray.retrieval.service import default_format

    out = a.output
    stored = row["codec"] if row.get("passthrough") else None  # kept as-is: "jpeg"
    named = _extension_format(out) if out != "-" else None
    if a.format == "original" and stored is None:
        return a.format  # the archive refuses it with the reason
    if a.format:
        writes = stored if a.format == "original" else a.format
        if named is not None and named != writes:
            raise UsageError(f"--format {a.format} writes {writes} bytes, not the {named} file "
                             f"{out!r} names; change the name or the format")
        return a.format
    if out == "-":
        return default_format(row)
    if named in ("png", "npy"):
        return named
    if named is not None and named == stored:
        return "original"
    if named is not None:
        raise UsageError(f"cannot write {out}: {row['id']!r} is not stored as a {named} file "
                         "(its pixels were compressed); name the output .png or .npy")
    raise UsageError(f"cannot tell the format from {out!r}: name it .png or .npy (or .jpg for a "
                     "JPEG stored as-is), or pass --format")


def _cmd_get(a: argparse.Namespace) -> int:
    from pilc_ray.retrieval.archive import json_row, open_archive, render
    from pilc_ray.storage_flags import store_options

    to_stdout = a.output == "-"
    if not a.meta:  # refuse before any read
        if to_stdout and sys.stdout.isatty():
            raise UsageError("refusing to write image bytes to a terminal; pass -o FILE, or "
                             "redirect or pipe stdout")
        if not to_stdout:
            _writable(a.output)
    archive = open_archive(a.index, store_options(a))
    if a.meta:
        print(json.dumps(json_row(archive.meta(a.id)), indent=2))
        return 0
    fmt = _get_format(a, archive.locate(a.id))
    if fmt == "original":
        body = archive.original(a.id)[1]
    else:
        body = render(archive.image(a.id), fmt).body
    if to_stdout:
        sys.stdout.buffer.write(body)
        sys.stdout.buffer.flush()
    else:
        Path(a.output).write_bytes(body)
        print(f"{a.id} -> {a.output} ({fmt}, {len(body)} bytes)", file=sys.stderr)
    return 0


def _cmd_ls(a: argparse.Namespace) -> int:
    from pilc_ray.retrieval.archive import json_row, open_archive
    from pilc_ray.storage_flags import store_options

    cols = ["width", "height", "mode", "codec", "compressed_bytes"] if a.long or a.json else []
    try:
        rows = open_archive(a.index, store_options(a)).iter_rows(
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
    return 0


def _cmd_serve(a: argparse.Namespace) -> int:
    from pilc_ray.retrieval.service import check_serve_arguments, run_server

    problem = check_serve_arguments(a)
    if problem:
        raise UsageError(problem)
    return run_server(a)


# --------------------------------------------------------------------------------------------
# options of each command (added only when that command runs)

INDEX_HELP = "job output (folder or s3:// prefix) or its index.parquet"


def _encode_options(e: argparse.ArgumentParser) -> None:
    from codec.container import EFFORT_CHOICES, EFFORT_HELP
    from codec.layout import TILE_SIZES

    e.add_argument("input", help="image file (PNG, TIFF, JPEG, ...: whatever Pillow reads)")
    e.add_argument("output", help="blob file to write (its folder must exist)")
    e.add_argument("--fallback", choices=("auto", "always", "never"), default="auto",
                   help="classical codecs instead of the learned one: auto (when smaller; "
                        "default), always, never")
    e.add_argument("--effort", choices=EFFORT_CHOICES, default="default", help=EFFORT_HELP)
    e.add_argument("--vq", action="store_true",
                   help="send VQ-VAE side information (costs bytes; FORMAT.md)")
    e.add_argument("--tile", type=int, choices=TILE_SIZES, default=None,
                   help="tile side: 256 (fewer bytes) or 128 (4x more independent streams); "
                        "default 256, but 128 at the fast levels for images under 32 tiles")
    _device_options(e)
    e.set_defaults(fn=_cmd_encode)


def _decode_options(d: argparse.ArgumentParser) -> None:
    d.add_argument("input", help="blob file (from pilc encode)")
    d.add_argument("output", help="file to write: .png (exact pixels, metadata kept) or .npy")
    _device_options(d)
    d.set_defaults(fn=_cmd_decode)


def _device_options(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument("--device", choices=("auto", "cpu", "cuda"), default=None,
                     help="where the pixel stage runs (default: PILC_DEVICE, else auto: "
                          "CUDA where CuPy sees a GPU); every device gives the same bytes")
    cmd.add_argument("--threads", type=int, default=None,
                     help="CPU threads for the kernels (default: the CPUs this process may "
                          "use, or PILC_THREADS)")


def _info_options(i: argparse.ArgumentParser) -> None:
    i.add_argument("blob", help="blob file (from pilc encode)")
    i.set_defaults(fn=_cmd_info)


def _train_options(t: argparse.ArgumentParser) -> None:
    from codec.train.trainer import add_arguments

    add_arguments(t)
    t.set_defaults(fn=_cmd_train)


def _bench_options(b: argparse.ArgumentParser) -> None:
    b.add_argument("args", nargs=argparse.REMAINDER,
                   help="arguments of benchmarks/peers.py (its --help lists them)")
    b.set_defaults(fn=_cmd_bench)


def _demo_options(m: argparse.ArgumentParser) -> None:
    m.add_argument("--out", default="out/demo",
                   help="folder for the blobs (default: %(default)s)")
    m.add_argument("--count", type=int, default=12,
                   help="generated images to compress (default: %(default)s)")
    m.set_defaults(fn=_cmd_demo)


def _compress_options(c: argparse.ArgumentParser) -> None:
    from pilc_ray.job.cli import add_compress_arguments

    add_compress_arguments(c)
    c.set_defaults(fn=_cmd_compress)


def _samples_options(s: argparse.ArgumentParser) -> None:
    s.add_argument("out", help="folder to write the images into")
    s.add_argument("--count", type=int, default=24,
                   help="PNG images to write, plus one JPEG (default: %(default)s)")
    s.set_defaults(fn=_cmd_samples)


def _lookup_options(lk: argparse.ArgumentParser) -> None:
    from pilc_ray.storage_flags import add_store_arguments

    lk.add_argument("dest", help=INDEX_HELP)
    lk.add_argument("id", help="image id, as `pilc ls` prints it")
    lk.add_argument("--output", help="also decode the image and write it here (a .png file)")
    add_store_arguments(lk)
    lk.set_defaults(fn=_cmd_lookup)


def _verify_options(v: argparse.ArgumentParser) -> None:
    from pilc_ray.storage_flags import add_store_arguments

    v.add_argument("dest", help=INDEX_HELP)
    add_store_arguments(v)
    v.set_defaults(fn=_cmd_verify)


def _get_options(g: argparse.ArgumentParser) -> None:
    from pilc_ray.storage_flags import add_store_arguments

    g.add_argument("index", help=INDEX_HELP)
    g.add_argument("id", help="image id, as `pilc ls` prints it")
    g.add_argument("-o", "--output", default="-",
                   help="file to write; its extension picks the format: .png, .npy, or .jpg "
                        "for a JPEG stored as-is (the original bytes). '-' (default): stdout, "
                        "when it is not a terminal")
    g.add_argument("--format", choices=("png", "raw", "npy", "original"),
                   help="override the extension's choice (original: the stored JPEG file; "
                        "raw: pixel bytes, C order, little-endian)")
    g.add_argument("--meta", action="store_true", help="print the index row as JSON instead")
    add_store_arguments(g)
    g.set_defaults(fn=_cmd_get)


def _ls_options(ls: argparse.ArgumentParser) -> None:
    from pilc_ray.storage_flags import add_store_arguments

    ls.add_argument("index", help=INDEX_HELP)
    ls.add_argument("--prefix", help="only ids starting with this")
    ls.add_argument("--start", help="first id (inclusive)")
    ls.add_argument("--limit", type=int, help="at most this many rows")
    ls.add_argument("-l", "--long", action="store_true", help="id, size, mode, codec, bytes")
    ls.add_argument("--json", action="store_true", help="one JSON object per line")
    add_store_arguments(ls)
    ls.set_defaults(fn=_cmd_ls)


def _serve_options(s: argparse.ArgumentParser) -> None:
    from pilc_ray.retrieval.service import add_serve_arguments
    from pilc_ray.storage_flags import add_store_arguments

    add_serve_arguments(s)
    add_store_arguments(s)
    s.set_defaults(fn=_cmd_serve)


def _report_options(rp: argparse.ArgumentParser) -> None:
    from pilc_ray.reports.cli import add_report_arguments, run_report

    add_report_arguments(rp)
    rp.set_defaults(fn=run_report)


COMMANDS: list[tuple[str, str, Callable[[argparse.ArgumentParser], None]]] = [
    ("encode", "compress one image file to a blob", _encode_options),
    ("decode", "decompress a blob to .png or .npy", _decode_options),
    ("info", "print a blob's header", _info_options),
    ("train", "train the model and export shipped weights", _train_options),
    ("bench", "side-by-side benchmark against peer codecs", _bench_options),
    ("demo", "compress and verify generated sample images", _demo_options),
    ("compress", "batch job: compress a folder/manifest/S3 prefix on Ray", _compress_options),
    ("samples", "write generated sample images (for the first job)", _samples_options),
    ("lookup", "print one image's index row (reads one row group)", _lookup_options),
    ("verify", "decode every indexed image alone and check checksums", _verify_options),
    ("get", "one image from a job's output (index lookup + one read)", _get_options),
    ("ls", "list indexed ids in order (streams row groups)", _ls_options),
    ("serve", "HTTP service for single images (FastAPI + uvicorn)", _serve_options),
    ("report", "job report (terminal, --html, --json) from an index", _report_options),
]


class _LazyParser(argparse.ArgumentParser):
    """A sub-command's parser that adds its options (importing what they need) on first use:
    parsing its arguments or printing its help. `pilc --help` lists commands without it."""

    def __init__(self, *args: Any,
                 populate: Callable[[argparse.ArgumentParser], None] | None = None,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._populate = populate

    def _ensure_populated(self) -> None:
        populate, self._populate = self._populate, None
        if populate is not None:
            populate(self)

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> Any:
        self._ensure_populated()
        return super().parse_known_args(args, namespace)

    def format_usage(self) -> str:
        self._ensure_populated()
        return super().format_usage()

    def format_help(self) -> str:
        self._ensure_populated()
        return super().format_help()


def build_parser() -> argparse.ArgumentParser:
    """The `pilc` parser; each sub-command's options are added when it is used."""
    p = argparse.ArgumentParser(prog="pilc", description="learned lossless image compression")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_LazyParser)
    for name, help_text, populate in COMMANDS:
        sub.add_parser(name, help=help_text, description=help_text, populate=populate)
    return p


# --------------------------------------------------------------------------------------------
# running


def _user_error_status(e: BaseException) -> int | None:
    """Exit status for an exception that is the user's doing, None for a bug (traceback).

    The codec's and the archive's error classes are looked up only if their modules were
    imported (nothing of theirs can have been raised otherwise), to keep imports lazy.
    """
    if isinstance(e, CliError):
        return e.status
    if isinstance(e, OSError):  # missing input, unwritable output, storage unreachable
        return 1
    for module, name in (("codec.errors", "CodecError"),
                         ("pilc_ray.retrieval.archive", "ArchiveError"),
                         ("pilc_ray.storage", "StorageError")):
        cls = getattr(sys.modules.get(module), name, None)
        if cls is not None and isinstance(e, cls):
            return 1
    return None


def _message(e: BaseException) -> str:
    """One line: file errors as 'what: file', any other message with its newlines folded."""
    if isinstance(e, OSError) and e.strerror and e.filename:
        text = f"{e.strerror}: {e.filename}"
    else:
        text = str(e) or type(e).__name__
    return " ".join(text.split())


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.fn(args)
    except BrokenPipeError:  # `pilc get ... | head -c 100`: the reader left; not an error
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    except Exception as e:
        status = _user_error_status(e)
        if status is None:
            raise
        print(f"pilc: error: {_message(e)}", file=sys.stderr)
        return status


if __name__ == "__main__":
    sys.exit(main())
