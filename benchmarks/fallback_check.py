#!/usr/bin/env python
"""Measure what `fallback="auto"` costs and saves, per image, single-threaded.

    python benchmarks/fallback_check.py measure DIR [DIR ...] --jsonl OUT.jsonl
        per image: learned blob bytes (fallback="never") and its encode time, PNG (Pillow
        default) and lossless WebP (m4) blob bytes and times, the cheap statistics
        (repeat share, sampled PNG-level-1 estimate, ...) and their times: the data the
        auto rule is designed from.
    python benchmarks/fallback_check.py check DIR [DIR ...] --out RESULT.md
        per set: encode MB/s of auto and never side by side (alternating, best of --repeats),
        classical encoder runs avoided against the old rule, bytes against the old rule's auto,
        the worst blob against PNG (must stay <= PNG + 64 bytes).

The old rule (before the estimate) is reproduced here from the measured sizes, so "bytes vs the
old auto" needs no second checkout.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import datetime  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import shlex  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable, Iterator  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

import codec  # noqa: E402
from codec import api, classical, container, fallback  # noqa: E402
from codec.imagefile import RasterImage, load_image  # noqa: E402

EXTS = {".png", ".tif", ".tiff", ".bmp", ".ppm", ".pgm"}
PNG_SLACK = 64  # the product's guarantee: never above PNG (Pillow default) + 64 bytes

# The rule as it was before the estimate (for "bytes vs the old auto" and "runs avoided").
OLD_LOW_BPSP, OLD_HIGH_BPSP, OLD_SMALL, OLD_REPEAT = 1.5, 6.0, 1 << 10, 0.2


def images(folder: Path) -> Iterator[tuple[str, RasterImage]]:
    for p in sorted(q for q in folder.rglob("*") if q.suffix.lower() in EXTS and q.is_file()):
        img = load_image(str(p))
        # pixels only, as benchmarks/peers.py hands them to every codec: ICC/Exif/text would
        # weigh the same in every blob and the PNG reference carries none
        yield (
            str(p.relative_to(folder)),
            RasterImage(img.pixels, img.mode, palette=img.palette, palette_mode=img.palette_mode),
        )


def timed(fn: Callable[[], object]) -> tuple[object, float]:
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def classical_blob(img: RasterImage, kind: str, effort: str = "default") -> tuple[int, float]:
    """Blob bytes of one classical kind (as auto would store it at this effort level) and its
    encode time."""
    settings = classical.classical_effort(effort)
    payload, dt = timed(lambda: classical.encode_kind(img, kind, effort=settings))
    return len(container.pack(api._header(img, kind), payload)), dt


def old_kinds(img: RasterImage, learned_bytes: int) -> tuple[str, ...]:
    """Classical kinds the old rule ran."""
    bpsp = 8 * learned_bytes / img.pixels.size
    if bpsp < OLD_LOW_BPSP or bpsp > OLD_HIGH_BPSP or api.repeat_share(img.pixels) >= OLD_REPEAT:
        return classical.default_kinds(img.mode)
    return ("png",) if img.pixels.size <= OLD_SMALL else ()


def measure_one(img: RasterImage) -> dict:
    px = img.pixels
    blob, t_never = timed(lambda im=img: codec.encode(im, fallback="never", threads=1))
    png_raw = len(classical.encode_kind(img, "png"))
    png, t_png = classical_blob(img, "png")
    webp, t_webp = classical_blob(img, "webp")
    rep, t_rep = timed(lambda: api.repeat_share(px))
    est, t_est = timed(lambda: fallback.estimate_png(img))
    est8, t_est8 = timed(lambda: fallback.estimate_png(img, 8))
    estw, t_estw = timed(lambda: fallback.estimate_webp(img))
    return {
        "mode": img.mode,
        "h": px.shape[0],
        "w": px.shape[1],
        "samples": int(px.size),
        "learned": len(blob),
        "t_never": t_never,
        "png_raw": png_raw,
        "png": png,
        "t_png": t_png,
        "webp": webp,
        "t_webp": t_webp,
        "repeat": rep,
        "t_repeat": t_rep,
        "est_png": est,
        "t_est": t_est,
        "est8": est8,
        "t_est8": t_est8,
        "est_webp": estw,
        "t_est_webp": t_estw,
        "old_kinds": list(old_kinds(img, len(blob))),
    }


def cmd_measure(args: argparse.Namespace) -> int:
    with open(args.jsonl, "a") as out:
        for d in args.dirs:
            folder = Path(d)
            for name, img in images(folder):
                if img.mode not in api.LEARNED_MODES:
                    continue
                rec = {"set": folder.name, "image": name, **measure_one(img)}
                out.write(json.dumps(rec) + "\n")
                out.flush()
    return 0


class Counting:
    """Counts classical.encode_kind calls per kind (what auto ran), without changing them."""

    def __init__(self) -> None:
        self.calls: dict[str, int] = {}
        self._orig = classical.encode_kind

    def __enter__(self) -> Counting:
        def wrapped(img: RasterImage, kind: str, **kw: object) -> bytes:
            self.calls[kind] = self.calls.get(kind, 0) + 1
            return self._orig(img, kind, **kw)

        classical.encode_kind = wrapped  # type: ignore[assignment]
        return self

    def __exit__(self, *exc: object) -> None:
        classical.encode_kind = self._orig  # type: ignore[assignment]


def best_time(fn: Callable[[], bytes], repeats: int) -> tuple[bytes, float]:
    best, out = float("inf"), b""
    for _ in range(repeats):
        out, dt = timed(fn)
        best = min(best, dt)
    return out, best  # type: ignore[return-value]


def check_set(folder: Path, repeats: int, effort: str = "default") -> dict:
    s = {
        "set": folder.name,
        "images": 0,
        "bytes_px": 0,
        "t_never": 0.0,
        "t_auto": 0.0,
        "t_oracle": 0.0,
        "old_runs": 0,
        "new_runs": 0,
        "auto": 0,
        "old_auto": 0,
        "png_raw": 0,
        "worst": None,
        "losses": [],
        "skipped": 0,
    }
    for name, img in images(folder):
        if img.mode not in api.LEARNED_MODES:
            s["skipped"] += 1
            continue
        never, auto, t_never, t_auto = b"", b"", float("inf"), float("inf")
        opts = {"threads": 1, "effort": effort}
        for _ in range(repeats):  # alternate, so drift in machine speed hits both alike
            never, dt = timed(lambda im=img, o=opts: codec.encode(im, fallback="never", **o))
            t_never = min(t_never, dt)
            with Counting() as c:
                auto, dt = timed(lambda im=img, o=opts: codec.encode(im, fallback="auto", **o))
            t_auto = min(t_auto, dt)
        assert np.array_equal(codec.decode(auto), img.pixels), name
        chosen = codec.info(auto)["codec"]
        # the oracle: a rule that knew the winner runs the learned encoder and that kind alone
        t_oracle = t_never
        if chosen in classical.default_kinds(img.mode):
            t_oracle += min(classical_blob(img, chosen, effort)[1] for _ in range(repeats))
        png_raw = len(classical.encode_kind(img, "png"))
        kinds = old_kinds(img, len(never))
        old = len(never)
        for k in kinds:
            old = min(old, classical_blob(img, k, effort)[0])
        s["images"] += 1
        s["bytes_px"] += img.pixels.nbytes
        s["t_never"] += t_never
        s["t_auto"] += t_auto
        s["t_oracle"] += t_oracle
        s["old_runs"] += len(kinds)
        s["new_runs"] += sum(c.calls.values())
        s["auto"] += len(auto)
        s["old_auto"] += old
        s["png_raw"] += png_raw
        over = len(auto) - png_raw
        if s["worst"] is None or over > s["worst"][0]:
            s["worst"] = (over, name)
        if len(auto) > old:
            s["losses"].append((name, len(auto) - old, old))
    return s


def machine() -> str:
    from peers import cpu_name  # same folder

    cpu = cpu_name()
    py = platform.python_version()
    return f"{cpu}, {os.cpu_count()} logical CPUs, {platform.platform()}, Python {py}"


def cmd_check(args: argparse.Namespace) -> int:
    sets = [check_set(Path(d), args.repeats, args.effort) for d in args.dirs]
    args_s = " ".join(shlex.quote(a) for a in sys.argv[1:])
    cmdline = f"python benchmarks/fallback_check.py {args_s}"
    lines = [
        '# fallback="auto": cost and bytes of the never-worse-than-PNG check',
        "",
        f"Command: `{cmdline}`  ",
        f"Machine: {machine()}, one thread (threads=1, *_NUM_THREADS=1)  ",
        f"Effort: {args.effort}  ",
        f"Date: {datetime.date.today().isoformat()}",
        "",
        "Speed: encode MB/s of raw pixel bytes, `auto` and `never` timed alternately on each image "
        f"(best of {args.repeats}), summed over the set. Classical runs: classical encoder calls "
        "(PNG, WebP) of the old rule (bpsp < 1.5 or > 6, repeat share >= 0.2, PNG alone <= 1024 "
        "samples) and of the new one. Oracle/never: what a rule that knew the winner would cost "
        "(the learned encode plus the winning classical kind alone, the same bytes as auto): the "
        "best auto/never any estimate can reach without changing the bytes. Bytes: blob "
        "totals of the new auto and the old auto. "
        "Worst vs PNG: largest blob minus Pillow-default PNG (guarantee: <= +64).",
        "",
        "| set | images | never MB/s | auto MB/s | auto/never | oracle/never | "
        "classical runs old -> new | "
        "bytes auto (new) | bytes auto (old) | new - old | worst vs PNG (bytes, image) |",
        "|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---|",
    ]
    bad = 0
    for s in sets:
        if not s["images"]:
            continue
        mb = s["bytes_px"] / 1e6
        worst = s["worst"]
        bad += worst[0] > PNG_SLACK
        lines.append(
            f"| {s['set']} | {s['images']} | {mb / s['t_never']:.2f} | {mb / s['t_auto']:.2f} | "
            f"{s['t_never'] / s['t_auto']:.3f} | {s['t_never'] / s['t_oracle']:.3f} | "
            f"{s['old_runs']} -> {s['new_runs']} | "
            f"{s['auto']} | {s['old_auto']} | {s['auto'] - s['old_auto']:+d} | "
            f"{worst[0]:+d} ({worst[1]}) |"
        )
    lines += ["", "Images where the new auto is larger than the old auto:", ""]
    any_loss = False
    for s in sets:
        for name, extra, old in s["losses"]:
            any_loss = True
            lines.append(f"- {s['set']}/{name}: +{extra} bytes ({100 * extra / old:.2f}% of {old})")
    if not any_loss:
        lines.append("- none")
    skipped = [f"{s['set']} ({s['skipped']})" for s in sets if s["skipped"]]
    if skipped:
        lines += ["", f"Not learned modes, skipped: {', '.join(skipped)}."]
    text = "\n".join(lines) + "\n"
    if args.out:
        Path(args.out).write_text(text)
    print(text)
    return 1 if bad else 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("measure")
    m.add_argument("dirs", nargs="+")
    m.add_argument("--jsonl", required=True)
    c = sub.add_parser("check")
    c.add_argument("dirs", nargs="+")
    c.add_argument("--out")
    c.add_argument("--repeats", type=int, default=2)
    c.add_argument("--effort", default="default", help="the learned level (fast, default, max)")
    args = ap.parse_args(argv)
    return cmd_measure(args) if args.cmd == "measure" else cmd_check(args)


if __name__ == "__main__":
    raise SystemExit(main())
