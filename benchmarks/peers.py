#!/usr/bin/env python
"""Side-by-side lossless benchmark of our codec against classical peers, on the same images.

Every codec sees the same decoded pixels (via `codec.imagefile.load_image`), runs single-threaded,
and every round trip is checked bit-exactly: a mismatch or a decode error is a FAILURE that is
printed, written into the report, and makes the exit status 1 -- never silently skipped.

    python benchmarks/peers.py DIR [DIR ...] --out benchmarks/results/peers_NAME.md \\
        [--json PATH] [--limit N] [--codecs png,webp,jxl-e3,...]

See benchmarks/README.md for what the columns mean.
"""

from __future__ import annotations

# Single-thread everything before any native library is imported (fair single-core numbers).
import os

for _var in (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "NUMBA_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "RAYON_NUM_THREADS",
    "PILC_THREADS",  # our kernels otherwise use every CPU this process may run on
):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import re  # noqa: E402
import shlex  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from dataclasses import dataclass, field, replace  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, uninstalled

from PIL import Image  # noqa: E402

from codec.errors import CodecError  # noqa: E402
from codec.imagefile import (  # noqa: E402
    RasterImage,
    load_image,
    png_decode_pixels,
    png_encode_pixels,
)

try:
    import imagecodecs
except ImportError:  # pragma: no cover - imagecodecs is a hard dependency of the project
    imagecodecs = None

IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".webp", ".bmp", ".gif", ".ppm", ".pgm"}
EIGHT = ("L", "LA", "RGB", "RGBA")
SIXTEEN = ("L;16", "LA;16", "RGB;16", "RGBA;16")


# ----------------------------------------------------------------------------------------------
# codec registry


@dataclass
class Codec:
    """One entry of the table: encode a RasterImage to bytes, decode the bytes back."""

    name: str
    encode: Callable[[RasterImage], bytes]
    decode: Callable[[bytes, RasterImage], np.ndarray | RasterImage]
    modes: tuple[str, ...] | None = None  # None: every mode
    note: str = ""

    def supports(self, mode: str) -> bool:
        return self.modes is None or mode in self.modes


CODECS: dict[str, Codec] = {}
SKIPPED: dict[str, str] = {}  # name -> why it is not in this run


def register_codec(
    name: str,
    encode_fn: Callable[[np.ndarray], bytes],
    decode_fn: Callable[[bytes], np.ndarray | RasterImage],
    *,
    modes: tuple[str, ...] | None = None,
    note: str = "",
) -> None:
    """Plug in a codec that works on bare pixel arrays (e.g. ours: ``codec.encode/decode``).

    ``decode_fn`` may return the pixel array or a RasterImage (its ``.pixels`` are compared).
    ``modes`` limits which images it is given; by default it gets all of them, and an exception
    while encoding a given image counts as a failure.
    """
    CODECS[name] = Codec(
        name,
        encode=lambda img: bytes(encode_fn(img.pixels)),
        decode=lambda blob, _img: decode_fn(blob),
        modes=modes,
        note=note,
    )
    SKIPPED.pop(name, None)


def _register(name: str, encode, decode, modes, note: str = "") -> None:
    CODECS[name] = Codec(name, encode, decode, modes, note)


def _png_decode(blob: bytes, img: RasterImage) -> np.ndarray | RasterImage:
    """libpng for plain modes; palette (indices + PLTE) and 1-bit go through Pillow, which keeps
    them as stored where libpng would expand them."""
    if img.mode == "P":
        return png_decode_pixels(blob)
    if img.mode == "1":
        with Image.open(io.BytesIO(blob)) as pil:
            return np.asarray(pil, dtype=bool).astype(np.uint8)
    px = np.asarray(imagecodecs.png_decode(blob))
    return px[:, :, 0] if px.ndim == 3 and px.shape[2] == 1 else px


def _png_opt_encode(img: RasterImage) -> bytes:
    return png_encode_pixels(img, optimize=True)


def _jxl(effort: int):
    def enc(img: RasterImage) -> bytes:
        return bytes(
            imagecodecs.jpegxl_encode(img.pixels, lossless=True, effort=effort, numthreads=1)
        )

    return enc


def _jxl_decode(blob: bytes, _img: RasterImage) -> np.ndarray:
    px = np.asarray(imagecodecs.jpegxl_decode(blob, numthreads=1))
    return px[:, :, 0] if px.ndim == 3 and px.shape[2] == 1 else px


def _webp_encode(img: RasterImage) -> bytes:
    from codec.classical import encode_kind

    return encode_kind(img, "webp")  # lossless, quality 75, method 4, gray as R=G=B, 1 thread


def _webp_decode(blob: bytes, img: RasterImage) -> np.ndarray:
    from codec.classical import decode_classical

    return decode_classical("webp", blob, img.mode, img.pixels.shape)


def _available(codec_name: str) -> bool:
    return imagecodecs is not None and bool(getattr(imagecodecs, codec_name).available)


def register_builtin_codecs() -> None:
    """The classical peers, where this imagecodecs build has them; reasons for the rest."""
    no_cmyk = EIGHT + SIXTEEN + ("P", "1")
    _register("png", png_encode_pixels, _png_decode, no_cmyk, "Pillow defaults (zlib level 6)")
    _register("png-opt", _png_opt_encode, _png_decode, no_cmyk, "Pillow optimize=True")
    if _available("WEBP"):
        _register("webp", _webp_encode, _webp_decode, EIGHT, "lossless, q75, method 4")
    else:
        SKIPPED["webp"] = "imagecodecs built without WebP"
    for e in (1, 3, 7):
        if _available("JPEGXL"):
            _register(f"jxl-e{e}", _jxl(e), _jxl_decode, EIGHT + SIXTEEN, f"lossless, effort {e}")
        else:
            SKIPPED[f"jxl-e{e}"] = "imagecodecs built without JPEG XL"
    if _available("QOI"):
        _register(
            "qoi",
            lambda img: bytes(imagecodecs.qoi_encode(img.pixels)),
            lambda b, _i: imagecodecs.qoi_decode(b),
            ("RGB", "RGBA"),
        )
    else:
        SKIPPED["qoi"] = "imagecodecs built without QOI"
    if _available("JPEGLS"):
        _register(
            "jpegls",
            lambda img: bytes(imagecodecs.jpegls_encode(img.pixels)),
            lambda b, _i: imagecodecs.jpegls_decode(b),
            ("L", "RGB", "RGBA", "L;16", "RGB;16", "RGBA;16"),
            "CharLS, near=0",
        )
    else:
        SKIPPED["jpegls"] = "imagecodecs built without JPEG-LS"


def register_pilc() -> None:
    """Our codec, if `import codec` exposes encode and decode.

    It gets the image as the peers see it: pixels, mode and palette (a palette image is coded as
    a palette image, not as a gray plane of indices), without ICC/Exif/text, which the peers do
    not store either."""
    try:
        import codec
    except Exception as e:  # noqa: BLE001 - any import failure just means "not ready"
        SKIPPED["pilc"] = f"import codec failed: {e}"
        return
    enc, dec = getattr(codec, "encode", None), getattr(codec, "decode", None)
    if not (callable(enc) and callable(dec)):
        SKIPPED["pilc"] = "codec.encode/codec.decode not exposed yet"
        return

    def encoder(effort: str) -> Callable[[RasterImage], bytes]:
        def encode_image(img: RasterImage) -> bytes:
            bare = RasterImage(img.pixels, img.mode, palette=img.palette,
                               palette_mode=img.palette_mode)  # fmt: skip
            return bytes(enc(bare, effort=effort))

        return encode_image

    decode_image = getattr(codec, "decode_image", dec)  # RasterImage: palettes get checked too
    warm = np.zeros((8, 8, 3), np.uint8)  # load the model and every level's tables up front, so
    levels = (("fastest", "pilc-fastest"), ("fast", "pilc-fast"), ("default", "pilc"),
              ("max-v1", "pilc-max-v1"),
              ("max-v2", "pilc-max-v2"),
              ("max", "pilc-max"))  # fmt: skip
    for effort, _ in levels:  # no level's first image pays for them
        decode_image(enc(warm, effort=effort))
    for effort, name in levels:
        note = "ours" if effort == "default" else f"ours, effort {effort}"
        _register(name, encoder(effort), lambda blob, _img: decode_image(blob), None, note)


# ----------------------------------------------------------------------------------------------
# measuring


@dataclass
class Result:
    image: str
    codec: str
    bytes: int | None = None
    enc_s: float | None = None
    dec_s: float | None = None
    error: str | None = None


def _best_time(fn: Callable[[], object], repeats: int, min_time: float) -> tuple[object, float]:
    """Run fn once; repeat (up to `repeats` runs) while the total is under `min_time`; min wins."""
    t0 = time.perf_counter()
    out = fn()
    best = total = time.perf_counter() - t0
    runs = 1
    while runs < repeats and total < min_time:
        t0 = time.perf_counter()
        fn()
        dt = time.perf_counter() - t0
        best, total, runs = min(best, dt), total + dt, runs + 1
    return out, best


def _same(img: RasterImage, out: np.ndarray | RasterImage) -> str | None:
    """None if `out` is img's pixels (and palette) exactly, else what differs."""
    if isinstance(out, RasterImage):
        if img.mode == "P" and (out.palette != img.palette or out.palette_mode != img.palette_mode):
            return "palette differs"
        out = out.pixels
    out = np.asarray(out)
    if out.shape != img.pixels.shape or out.dtype != img.pixels.dtype:
        return f"decoded {out.dtype}{out.shape}, expected {img.pixels.dtype}{img.pixels.shape}"
    if not np.array_equal(out, img.pixels):
        n = int(np.count_nonzero(out != img.pixels))
        return f"{n} samples differ"
    return None


def measure(img: RasterImage, name: str, codec: Codec, repeats: int, min_time: float) -> Result:
    r = Result(name, codec.name)
    try:
        blob, r.enc_s = _best_time(lambda: codec.encode(img), repeats, min_time)
        r.bytes = len(blob)
    except Exception as e:  # noqa: BLE001 - reported as a failure, loudly
        r.error = f"encode: {type(e).__name__}: {e}"
        return r
    try:
        out, r.dec_s = _best_time(lambda: codec.decode(blob, img), repeats, min_time)
    except Exception as e:  # noqa: BLE001
        r.error = f"decode: {type(e).__name__}: {e}"
        return r
    r.error = _same(img, out)
    return r


@dataclass
class ImageInfo:
    name: str
    mode: str
    height: int
    width: int
    samples: int
    raw_bytes: int


@dataclass
class SetReport:
    label: str
    images: list[ImageInfo] = field(default_factory=list)
    results: list[Result] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)


def find_images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTS and p.is_file())


def pick(paths: list[Path], limit: int | None) -> list[Path]:
    """Evenly spaced subset (deterministic), so a limited run still spans the whole folder."""
    if limit is None or limit >= len(paths):
        return paths
    return [paths[i * len(paths) // limit] for i in range(limit)]


def run_set(
    folder: Path, codecs: list[Codec], limit: int | None, repeats: int, min_time: float
) -> SetReport:
    rep = SetReport(str(folder))
    for path in pick(find_images(folder), limit):
        rel = str(path.relative_to(folder))
        try:
            img = load_image(path)
        except CodecError as e:
            rep.unreadable.append(f"{rel}: {e}")
            continue
        px = img.pixels
        ch = 1 if px.ndim == 2 else px.shape[2]
        info = ImageInfo(rel, img.mode, px.shape[0], px.shape[1], px.size, px.nbytes)
        rep.images.append(info)
        assert info.samples == px.shape[0] * px.shape[1] * ch
        for c in codecs:
            if not c.supports(img.mode):
                continue
            r = measure(img, rel, c, repeats, min_time)
            if r.error:
                print(f"ROUND-TRIP FAILURE [{c.name}] {folder}/{rel}: {r.error}", file=sys.stderr)
            rep.results.append(r)
    return rep


# ----------------------------------------------------------------------------------------------
# summarising


def summarize(images: list[ImageInfo], results: list[Result], codec_names: list[str]) -> list[dict]:
    info = {i.name: i for i in images}
    png = {r.image: r.bytes for r in results if r.codec == "png" and not r.error}
    rows = []
    for name in codec_names:
        rs = [r for r in results if r.codec == name]
        ok = [r for r in rs if not r.error]
        fails = [r for r in rs if r.error]
        row: dict = {"codec": name, "images": len(ok), "failures": len(fails)}
        if fails:
            row["failure_examples"] = [f"{r.image}: {r.error}" for r in fails[:5]]
        if ok:
            samples = sum(info[r.image].samples for r in ok)
            raw = sum(info[r.image].raw_bytes for r in ok)
            total = sum(r.bytes for r in ok)
            row.update(
                bytes=total,
                samples=samples,
                raw_bytes=raw,
                bpsp=8 * total / samples,
                enc_MBps=raw / 1e6 / sum(r.enc_s for r in ok),
                dec_MBps=raw / 1e6 / sum(r.dec_s for r in ok),
            )
            both = [r for r in ok if r.image in png]
            if both and name != "png":
                png_total = sum(png[r.image] for r in both)
                row["vs_png_pct"] = 100.0 * sum(r.bytes for r in both) / png_total
                worst = max(both, key=lambda r: r.bytes - png[r.image])
                row["worst_vs_png_bytes"] = worst.bytes - png[worst.image]
                row["worst_vs_png_image"] = worst.image
        rows.append(row)
    return rows


def _fmt_row(row: dict) -> str:
    if not row.get("images"):
        fails = row.get("failures", 0)
        status = f"**FAILED {fails}**" if fails else "n/a"
        return f"| {row['codec']} | 0 | - | - | - | - | - | - | {status} |"
    worst = (
        f"{row['worst_vs_png_bytes']:+,} ({row['worst_vs_png_image']})"
        if "worst_vs_png_bytes" in row
        else "-"
    )
    vs = f"{row['vs_png_pct']:.1f}%" if "vs_png_pct" in row else "-"
    if row["codec"] == "png":
        vs = "100%"
    status = f"**FAILED {row['failures']}**" if row["failures"] else "ok"
    return (
        f"| {row['codec']} | {row['images']} | {row['bytes']:,} | {row['bpsp']:.3f} | {vs} | "
        f"{row['enc_MBps']:.1f} | {row['dec_MBps']:.1f} | {worst} | {status} |"
    )


TABLE_HEAD = (
    "| codec | images | bytes | bpsp | vs PNG | enc MB/s | dec MB/s | worst vs PNG (bytes, image) "
    "| round trip |\n|---|---:|---:|---:|---:|---:|---:|---|---|"
)


def cpu_name() -> str:
    """The CPU's model name (Linux /proc/cpuinfo), else what platform knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info() -> dict:
    cpu = cpu_name()
    versions = {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "pillow": Image.__version__,
    }
    if imagecodecs is not None:
        versions["imagecodecs"] = imagecodecs.__version__
        libs = {}
        for part in imagecodecs.version().split(", "):
            key, _, ver = part.rpartition("-")
            if key in ("libjxl", "libwebp", "charls", "libpng", "zlib", "qoi", "libdeflate"):
                libs[key] = ver
        versions.update(libs)
    return {
        "cpu": cpu,
        "logical_cpus": os.cpu_count(),
        "platform": platform.platform(),
        "threads": "1 (env *_NUM_THREADS=1 and PILC_THREADS=1, jxl/webp numthreads=1)",
        "versions": versions,
    }


def _mode_summary(images: list[ImageInfo]) -> str:
    modes: dict[str, int] = {}
    for i in images:
        modes[i.mode] = modes.get(i.mode, 0) + 1
    mp = sum(i.height * i.width for i in images) / 1e6
    return f"{len(images)} images, {mp:.2f} MP, modes " + ", ".join(
        f"{m} x{n}" for m, n in sorted(modes.items())
    )


def write_markdown(path: Path, sets: list[SetReport], codec_names: list[str], meta: dict) -> None:
    lines = [
        f"# Peer benchmark: {path.stem.removeprefix('peers_')}",
        "",
        f"- command: `{meta['command']}`",
        f"- date: {meta['date']}",
        f"- machine: {meta['machine']['cpu']}, {meta['machine']['logical_cpus']} logical CPUs, "
        f"{meta['machine']['platform']}; threads: {meta['machine']['threads']}",
        "- versions: " + ", ".join(f"{k} {v}" for k, v in meta["machine"]["versions"].items()),
        f"- timing: best of up to {meta['repeats']} runs per image while under "
        f"{meta['min_time']} s; MB/s = raw pixel bytes / wall time",
        "- bpsp = 8 * compressed bytes / (H * W * C); vs PNG = bytes / PNG (Pillow default) bytes "
        "on the same images; worst = largest (codec - PNG) bytes over single images",
    ]
    if SKIPPED:
        lines.append("- not run: " + "; ".join(f"{k} ({v})" for k, v in SKIPPED.items()))
    all_images: list[ImageInfo] = []
    all_results: list[Result] = []
    for s in sets:
        tag = Path(s.label).name or s.label
        # names are only unique inside a set: prefix them for the total
        all_images += [replace(i, name=f"{tag}/{i.name}") for i in s.images]
        all_results += [replace(r, image=f"{tag}/{r.image}") for r in s.results]
        lines += ["", f"## {s.label}", "", _mode_summary(s.images), "", TABLE_HEAD]
        lines += [_fmt_row(r) for r in summarize(s.images, s.results, codec_names)]
        if s.unreadable:
            lines += ["", f"unreadable ({len(s.unreadable)}): " + "; ".join(s.unreadable[:10])]
    if len(sets) > 1:
        lines += ["", "## total", "", _mode_summary(all_images), "", TABLE_HEAD]
        lines += [_fmt_row(r) for r in summarize(all_images, all_results, codec_names)]
    fails = [r for r in all_results if r.error]
    lines += ["", "## round-trip failures", ""]
    lines += [f"- **{r.codec}** {r.image}: {r.error}" for r in fails] or ["none"]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


def _table(key: str, records: list[dict]) -> dict:
    """Per-image records as one column list + rows (a 1000-image run stays a few hundred KB)."""
    cols = list(records[0]) if records else []

    def cell(v):
        return float(f"{v:.6g}") if isinstance(v, float) else v

    return {f"{key}_columns": cols, key: [[cell(r[c]) for c in cols] for r in records]}


def dump_json(report: dict) -> str:
    """Indented JSON, except that each per-image row stays on one line."""
    text = json.dumps(report, indent=1)
    # collapse the innermost lists (rows) onto one line each
    return (
        re.sub(r"\[\s*([^\[\]{}]*?)\s*\]", lambda m: "[" + " ".join(m.group(1).split()) + "]", text)
        + "\n"
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("dirs", nargs="+", type=Path, help="image folders (searched recursively)")
    ap.add_argument("--out", type=Path, required=True, help="markdown report path")
    ap.add_argument("--json", type=Path, help="JSON report path (default: --out with .json)")
    ap.add_argument("--limit", type=int, help="at most N images per folder, evenly spaced")
    ap.add_argument("--codecs", nargs="+", help="names (space or comma separated); default all")
    ap.add_argument("--skip", nargs="+", default=[], help="codec names to leave out (e.g. pilc)")
    ap.add_argument("--repeats", type=int, default=5, help="max timing runs per image")
    ap.add_argument("--min-time", type=float, default=0.2, help="repeat while total < this (s)")
    args = ap.parse_args(argv)

    register_builtin_codecs()
    register_pilc()
    names = list(CODECS)
    if args.codecs:
        names = [n for chunk in args.codecs for n in chunk.split(",") if n]
        unknown = [n for n in names if n not in CODECS and n not in SKIPPED]
        if unknown:
            ap.error(f"unknown codecs {unknown}; known: {sorted(set(CODECS) | set(SKIPPED))}")
        names = [n for n in names if n in CODECS]
        if "png" not in names:
            names.insert(0, "png")  # the reference every ratio is taken against
    skip = {n for chunk in args.skip for n in chunk.split(",") if n}
    for n in skip & set(names):
        SKIPPED[n] = "left out with --skip"
    names = [n for n in names if n not in skip]
    for n, why in SKIPPED.items():
        print(f"note: codec {n!r} not run: {why}", file=sys.stderr)
    codecs = [CODECS[n] for n in names]

    sets = []
    for d in args.dirs:
        if not d.is_dir():
            ap.error(f"not a folder: {d}")
        t0 = time.perf_counter()
        sets.append(run_set(d, codecs, args.limit, args.repeats, args.min_time))
        print(
            f"{d}: {len(sets[-1].images)} images in {time.perf_counter() - t0:.1f} s",
            file=sys.stderr,
        )

    meta = {
        "command": " ".join(["python", *map(shlex.quote, sys.argv)]),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "machine": machine_info(),
        "repeats": args.repeats,
        "min_time": args.min_time,
        "skipped": dict(SKIPPED),
    }
    write_markdown(args.out, sets, names, meta)
    json_path = args.json or args.out.with_suffix(".json")
    report = {
        **meta,
        "codecs": {n: CODECS[n].note for n in names},
        "sets": [
            {
                "folder": s.label,
                "summary": summarize(s.images, s.results, names),
                **_table("images", [vars(i) for i in s.images]),
                **_table("results", [vars(r) for r in s.results]),
                "unreadable": s.unreadable,
            }
            for s in sets
        ],
    }
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(dump_json(report))
    print(Path(args.out).read_text())
    failures = sum(1 for s in sets for r in s.results if r.error)
    if failures:
        print(f"ROUND-TRIP FAILURES: {failures}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
