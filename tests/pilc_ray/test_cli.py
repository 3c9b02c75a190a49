"""The `pilc` command line as a user meets it: user errors as one line (never a traceback),
output formats chosen by extension (a stored JPEG comes back as itself), no image bytes on a
terminal, help texts, and a `pilc --help` that does not load the codec.

Most commands run in-process (`pilc_ray.cli.main`: an exception would fail the test); the
behaviour that depends on the process (tracebacks, a terminal on stdout, imports) runs
`python -m pilc_ray.cli` in a subprocess.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import select
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import codec
from codec.imagefile import RasterImage
from pilc_ray.cli import build_parser
from pilc_ray.cli import main as pilc_main
from pilc_ray.job.cli import config_from_args
from tests.pilc_ray.retrieval.test_archive import build_archive, expected, sample_set

ROOT = Path(__file__).resolve().parents[2]


def pilc(*args: str, **kw) -> subprocess.CompletedProcess:
    """`pilc ARGS` in a fresh interpreter, output captured as bytes."""
    return subprocess.run([sys.executable, "-m", "pilc_ray.cli", *args], capture_output=True,
                          timeout=kw.pop("timeout", 120), cwd=kw.pop("cwd", None), **kw)


@pytest.fixture(scope="module")
def images() -> dict:
    return sample_set()


@pytest.fixture(scope="module")
def dest(tmp_path_factory, images) -> str:
    return build_archive(str(tmp_path_factory.mktemp("cli") / "job"), images)


@pytest.fixture(scope="module")
def photo(tmp_path_factory) -> tuple[Path, RasterImage]:
    """An RGB PNG file on disk and its image."""
    y, x = np.mgrid[0:48, 0:64]
    img = RasterImage(np.stack([(x * 4) % 256, (y * 5) % 256, (x + y) % 256], -1)
                      .astype(np.uint8), "RGB")
    path = tmp_path_factory.mktemp("photo") / "in.png"
    path.write_bytes(codec.to_png_bytes(img))
    return path, img


def one_error_line(err: str) -> str:
    """The single `pilc: error: ...` line a user error prints (fails on anything else)."""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pilc: error: "), err
    return lines[0]


# --------------------------------------------------------------------------------------------
# item 11: user errors


def test_bad_output_path_fails_first_in_one_line_without_traceback(photo, tmp_path):
    src, _ = photo
    r = pilc("encode", str(src), "nodir/x.pilc", cwd=tmp_path)
    assert r.returncode == 1 and b"Traceback" not in r.stderr and r.stdout == b""
    assert "nodir" in one_error_line(r.stderr.decode())
    # checked before the input is even read: the output's problem is the one reported
    r = pilc("decode", "missing.pilc", "nodir/x.png", cwd=tmp_path)
    assert r.returncode == 1 and "cannot write nodir/x.png" in one_error_line(r.stderr.decode())
    assert not (tmp_path / "nodir").exists()


def _cases(src: Path, tmp: Path, dest: str) -> list[tuple[list[str], int, str]]:
    (tmp / "bad.pilc").write_bytes(b"PILC" + os.urandom(60))
    (tmp / "notes.txt").write_text("not an image\n")
    (tmp / "a_dir.png").mkdir(exist_ok=True)
    return [
        (["encode", str(tmp / "missing.png"), str(tmp / "x.pilc")], 1, "missing.png"),
        (["encode", str(tmp / "notes.txt"), str(tmp / "x.pilc")], 1, "not a recognised image"),
        (["encode", str(src), str(tmp / "a_dir.png")], 1, "is a directory"),
        (["decode", str(tmp / "missing.pilc"), str(tmp / "x.png")], 1, "missing.pilc"),
        (["decode", str(tmp / "bad.pilc"), str(tmp / "x.png")], 1, ""),
        (["info", str(tmp / "bad.pilc")], 1, ""),
        (["info", str(tmp / "missing.pilc")], 1, "No such file"),
        (["get", dest, "photos/nope.png", "-o", str(tmp / "x.png")], 1, "photos/nope.png"),
        (["get", dest, "../x", "-o", str(tmp / "x.png")], 1, "'..'"),
        (["get", dest, "photos/a.png", "-o", str(tmp / "nodir" / "x.png")], 1, "nodir"),
        (["get", str(tmp / "no-job"), "photos/a.png", "-o", str(tmp / "x.png")], 1, "index"),
        (["ls", str(tmp / "no-job")], 1, "no compacted index"),
        (["verify", str(tmp / "no-job")], 1, "no compacted index"),
        (["serve", str(tmp / "no-job")], 1, "no compacted index"),
    ]


def test_user_errors_are_one_line_and_a_nonzero_status(photo, tmp_path, dest, capsys):
    src, _ = photo
    for argv, status, needle in _cases(src, tmp_path, dest):
        capsys.readouterr()
        assert pilc_main(argv) == status, argv
        out, err = capsys.readouterr()
        assert needle in one_error_line(err), (argv, err)
    assert not (tmp_path / "x.png").exists() and not (tmp_path / "x.pilc").exists()
    # lookup and report: the same one-line form
    assert pilc_main(["lookup", dest, "photos/nope.png"]) == 1
    assert "no image with id" in one_error_line(capsys.readouterr().err)
    assert pilc_main(["report", str(tmp_path / "nowhere")]) != 0
    assert "no index at" in one_error_line(capsys.readouterr().err)


def test_bad_options_and_configs_are_one_line_not_a_traceback_or_a_hang(tmp_path, dest):
    """A count, port or job option out of range, a config that is not YAML or has a value of
    the wrong type: one `pilc: error:` line and status 2, before any work starts (a zero
    --cpus-per-worker once planned ~2000 workers and hung; --count 0 divided by zero)."""
    (tmp_path / "bad.yaml").write_text("source: [unclosed\nbatch_size: 4\n")
    (tmp_path / "list.yaml").write_text("- not\n- a mapping\n")
    (tmp_path / "typed.yaml").write_text(f"source: {tmp_path / 'in'}\nbatch_size: [1]\n")
    (tmp_path / "flag.yaml").write_text(f"source: {tmp_path / 'in'}\nverify: maybe\n")
    compress = ["compress", str(tmp_path / "in"), "--out", str(tmp_path / "job")]
    cases = [
        (["demo", "--count", "0", "--out", str(tmp_path / "demo")], "--count must be at least 1"),
        (["demo", "--count", "-1", "--out", str(tmp_path / "demo")], "--count must be at least 1"),
        (["compress", "--config", str(tmp_path / "bad.yaml"), "--out", str(tmp_path / "job")],
         "bad.yaml is not valid YAML"),
        (["compress", "--config", str(tmp_path / "list.yaml"), "--out", str(tmp_path / "job")],
         "a job config is a mapping"),
        (["compress", "--config", str(tmp_path / "missing.yaml")], "cannot read job config"),
        (["compress", "--config", str(tmp_path / "typed.yaml"), "--out", str(tmp_path / "job")],
         "batch_size must be an integer of at least 1, not [1]"),
        (["compress", "--config", str(tmp_path / "flag.yaml"), "--out", str(tmp_path / "job")],
         "verify must be true or false, not 'maybe'"),
        ([*compress, "--cpus-per-worker", "0"], "cpus_per_worker must be a number of at least"),
        ([*compress, "--batch-size", "0"], "batch_size must be an integer of at least 1, not 0"),
        ([*compress, "--workers", "-2"], "workers must be an integer of at least 1"),
        (["serve", dest, "--port", "99999"], "--port must be 1 to 65535, not 99999"),
        (["serve", dest, "--cache-mb", "-1"], "--cache-mb must be at least 0, not -1"),
    ]
    for argv, needle in cases:
        r = pilc(*argv, timeout=60)
        err = r.stderr.decode()
        assert r.returncode == 2 and "Traceback" not in err, (argv, err[-2000:])
        assert needle in one_error_line(err), (argv, err)
    assert not (tmp_path / "job").exists() and not (tmp_path / "demo").exists()


def test_job_config_checks_every_option_for_the_python_api_too():
    from pilc_ray.job.config import JobConfig, JobConfigError, JobError

    good = JobConfig(source="in", dest="out", cpus_per_worker=0.5, gpus_per_worker=None)
    assert good.batch_size == 16
    for bad, needle in [({"batch_size": "4"}, "batch_size must be an integer"),
                        ({"batch_size": True}, "batch_size must be an integer"),
                        ({"cpus_per_worker": float("nan")}, "cpus_per_worker must be"),
                        ({"tile": 256.0}, "tile must be one of"),
                        ({"layout": "heap"}, "layout must be one of"),
                        ({"progress": None}, "progress must be one of"),
                        ({"storage_options": ["endpoint"]}, "storage_options must be a mapping")]:
        with pytest.raises(JobConfigError, match=re.escape(needle)) as e:
            JobConfig(source="in", dest="out", **bad)
        assert isinstance(e.value, JobError) and isinstance(e.value, ValueError)


# --------------------------------------------------------------------------------------------
# items 12, 13: where and in which format images are written


def _run_on_terminal(args: list[str]) -> tuple[int, bytes, bytes]:
    """(status, what reached the terminal, stderr) of `pilc ARGS` with a pty as stdout."""
    master, slave = os.openpty()
    try:
        proc = subprocess.Popen([sys.executable, "-m", "pilc_ray.cli", *args], stdout=slave,
                                stderr=subprocess.PIPE)
        os.close(slave)
        _, err = proc.communicate(timeout=120)
        shown = b""
        while select.select([master], [], [], 0.2)[0]:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # the other side is gone: nothing more to read
                break
            if not chunk:
                break
            shown += chunk
        return proc.returncode, shown, err
    finally:
        os.close(master)


def test_get_refuses_a_terminal_but_writes_to_a_pipe(dest, images):
    status, shown, err = _run_on_terminal(["get", dest, "photos/a.png"])
    assert status == 2 and shown == b""
    assert "terminal" in one_error_line(err.decode())
    r = pilc("get", dest, "photos/a.png")  # stdout is a pipe
    assert r.returncode == 0 and codec.load_image(r.stdout) == images["photos/a.png"]
    r = pilc("get", dest, "photos/g.jpg")  # a stored JPEG: the file itself
    assert r.returncode == 0 and r.stdout == images["photos/g.jpg"]
    status, shown, _ = _run_on_terminal(["get", dest, "photos/a.png", "--meta"])
    assert status == 0 and b'"id": "photos/a.png"' in shown


def test_get_writes_the_format_its_output_name_says(dest, images, tmp_path, capsys):
    jpeg = images["photos/g.jpg"]
    for name in ("cam.jpg", "cam.JPEG"):
        assert pilc_main(["get", dest, "photos/g.jpg", "-o", str(tmp_path / name)]) == 0
        assert (tmp_path / name).read_bytes() == jpeg  # the stored file, not a re-encoding
    assert pilc_main(["get", dest, "photos/g.jpg", "-o", str(tmp_path / "cam.png")]) == 0
    png = (tmp_path / "cam.png").read_bytes()
    assert png.startswith(b"\x89PNG") and codec.load_image(png) == expected(jpeg)
    assert pilc_main(["get", dest, "graphics/d.png", "-o", str(tmp_path / "d.npy")]) == 0
    assert np.array_equal(np.load(tmp_path / "d.npy"), images["graphics/d.png"].pixels)
    assert pilc_main(["get", dest, "misc/001.png", "--format", "raw", "-o",
                      str(tmp_path / "m.raw")]) == 0
    assert (tmp_path / "m.raw").read_bytes() == images["misc/001.png"].pixels.tobytes()
    capsys.readouterr()
    refused = [  # (id, output name, extra flags, status, message)
        ("photos/a.png", "a.jpg", [], 2, "not stored as a jpeg file"),
        ("photos/g.jpg", "g.jpg", ["--format", "png"], 2, "--format png writes png"),
        ("photos/g.jpg", "g.png", ["--format", "original"], 2, "writes jpeg bytes"),
        ("photos/a.png", "a.png", ["--format", "npy"], 2, "the png file"),
        ("photos/a.png", "a.tif", [], 2, "cannot tell the format"),
        ("photos/a.png", "a", [], 2, "cannot tell the format"),
        ("photos/a.png", "a.bin", ["--format", "original"], 1, "original file is not stored"),
    ]
    for image_id, name, flags, status, needle in refused:
        argv = ["get", dest, image_id, "-o", str(tmp_path / name), *flags]
        assert pilc_main(argv) == status, argv
        assert needle in one_error_line(capsys.readouterr().err), argv
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cam.JPEG", "cam.jpg", "cam.png",
                                                          "d.npy", "m.raw"]


def test_decode_writes_png_or_npy_by_extension_and_refuses_other_names(photo, tmp_path,
                                                                        capsys, dest):
    src, img = photo
    blob = tmp_path / "x.pilc"
    assert pilc_main(["encode", str(src), str(blob)]) == 0
    assert pilc_main(["decode", str(blob), str(tmp_path / "back.png")]) == 0
    assert codec.load_image(tmp_path / "back.png") == img
    assert pilc_main(["decode", str(blob), str(tmp_path / "back.npy")]) == 0
    assert np.array_equal(np.load(tmp_path / "back.npy"), img.pixels)
    capsys.readouterr()
    for name, needle in (("out.jpg", "not a JPEG file"), ("out.webp", "cannot tell"),
                         ("out", "cannot tell")):
        assert pilc_main(["decode", str(blob), str(tmp_path / name)]) == 2
        assert needle in one_error_line(capsys.readouterr().err)
        assert not (tmp_path / name).exists()
    # lookup --output writes PNG: only under a .png name
    assert pilc_main(["lookup", dest, "photos/a.png", "--output", str(tmp_path / "l.jpg")]) == 2
    assert not (tmp_path / "l.jpg").exists()


# --------------------------------------------------------------------------------------------
# item 14: numbers, help, imports, README


def test_encode_reports_bits_per_subpixel(photo, tmp_path, capsys):
    src, img = photo
    capsys.readouterr()
    assert pilc_main(["encode", str(src), str(tmp_path / "x.pilc")]) == 0
    out = capsys.readouterr().out
    m = re.search(r": (\d+) bytes, codec \w+(?:, effort \w+)?, ([\d.]+) bpsp$", out.strip())
    assert m, out
    assert m[2] == f"{8 * int(m[1]) / img.pixels.size:.3f}"  # 48 x 64 x 3 samples
    assert int(m[1]) == (tmp_path / "x.pilc").stat().st_size


@pytest.mark.parametrize("effort", ["fastest", "fast"])
def test_encode_effort_reaches_the_blob_and_info(tmp_path, capsys, effort):
    y, x = np.mgrid[0:64, 0:80]  # the fast levels code images under 64x64 at the default level
    img = RasterImage(np.stack([(x * 4) % 256, (y * 5) % 256, (x + y) % 256], -1)
                      .astype(np.uint8), "RGB")  # fmt: skip
    src = tmp_path / "in.png"
    src.write_bytes(codec.to_png_bytes(img))
    out = tmp_path / "f.pilc"
    capsys.readouterr()
    assert pilc_main(["encode", "--effort", effort, "--fallback", "never", str(src),
                      str(out)]) == 0  # fmt: skip
    assert f", effort {effort}," in capsys.readouterr().out
    assert pilc_main(["info", str(out)]) == 0
    assert json.loads(capsys.readouterr().out)["effort"] == effort
    assert pilc_main(["decode", str(out), str(tmp_path / "back.png")]) == 0
    back = codec.load_image(tmp_path / "back.png")
    assert np.array_equal(back.pixels, img.pixels)


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    raise AssertionError("no sub-commands")


# train's options are the codec's own (codec/train/trainer.py); bench passes everything on
DOCUMENTED = ["encode", "decode", "info", "demo", "compress", "samples", "lookup", "verify",
              "get", "ls", "serve", "report"]


def test_every_option_has_help_and_help_shows_what_is_required():
    subs = _subparsers(build_parser())
    for name in DOCUMENTED:
        help_text = subs[name].format_help()  # adds the command's options
        for action in subs[name]._actions:
            assert action.help, (name, action.option_strings or action.dest)
        assert "usage: pilc " + name in help_text
    usage = subs["compress"].format_usage()
    assert usage.startswith("usage: pilc compress SOURCE --out DEST")
    assert "[SOURCE]" not in subs["compress"].format_help()
    serve = " ".join(subs["serve"].format_help().split())
    assert "--port PORT TCP port (default: 8080)" in serve


def test_compress_takes_source_and_dest_from_config(tmp_path):
    cfg = tmp_path / "job.yaml"
    cfg.write_text(f"source: {tmp_path / 'in'}\ndest: {tmp_path / 'out'}\nbatch_size: 4\n")
    a = build_parser().parse_args(["compress", "--config", str(cfg), "--workers", "2"])
    job = config_from_args(a)
    assert (job.source, job.dest, job.batch_size, job.workers) == (
        str(tmp_path / "in"), str(tmp_path / "out"), 4, 2)


def test_help_does_not_import_the_codec():
    probe = ("import sys, contextlib, io\n"
             "import pilc_ray.cli as cli\n"
             "with contextlib.redirect_stdout(io.StringIO()) as out:\n"
             "    try:\n"
             "        cli.main(['--help'])\n"
             "    except SystemExit:\n"
             "        pass\n"
             "assert 'encode' in out.getvalue()\n"
             "print(sorted(m for m in ('codec', 'numpy', 'pyarrow', 'ray') if m in sys.modules))")
    r = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"
    r = pilc("--help")
    assert r.returncode == 0 and b"demo" in r.stdout


def test_readme_use_section_names_every_codec_command():
    readme = (ROOT / "README.md").read_text()
    use = readme.split("## Use", 1)[1].split("\n## ", 1)[0]
    for name in ("encode", "decode", "info", "demo", "train", "bench"):
        assert re.search(rf"^pilc {name}\b", use, re.M), name

