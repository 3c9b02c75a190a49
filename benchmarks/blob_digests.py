"""SHA-256 of the blob of every image of the given folders (default encode settings and the
learned path alone), as JSON: run it on two versions of the codec and diff the files to prove
they write the same bytes (benchmarks/results/eval_reencode.md).

    python benchmarks/blob_digests.py ../shared/data/imagecompression_info ... --out a.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

IMAGE_SUFFIXES = {".png", ".ppm", ".pgm", ".tif", ".tiff", ".bmp"}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folders", nargs="+", type=Path)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--tile", type=int, default=256)
    args = ap.parse_args(argv)
    import codec

    digests = {}
    for folder in args.folders:
        for path in sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES):
            key = f"{folder.name}/{path.relative_to(folder)}"
            row = {}
            for fallback in ("auto", "never"):
                blob = codec.encode(path, fallback=fallback, tile=args.tile)
                row[fallback] = [hashlib.sha256(blob).hexdigest(), len(blob)]
            digests[key] = row
            print(key, row["never"][1], file=sys.stderr)
    args.out.write_text(json.dumps(digests, indent=1, sort_keys=True))


if __name__ == "__main__":
    main()
