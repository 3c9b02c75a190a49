"""Every script in experiments/ runs against today's code: each is imported, and the ones whose
numbers the experiment log quotes run once on a tiny generated set (so an API they use cannot
change under them unnoticed). Probes of abandoned variants live in git history instead
(docs/experiments.md names the commit)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from PIL import Image

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"
SCRIPTS = sorted(EXPERIMENTS.glob("*.py"))


def _load(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"experiments_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_experiments_holds_only_scripts_that_run():
    assert SCRIPTS, "experiments/ has no scripts"
    assert not list(EXPERIMENTS.glob("*.patch")), "patches against old code belong in history"


@pytest.mark.parametrize("path", SCRIPTS, ids=lambda p: p.name)
def test_experiment_imports_and_has_a_main(path):
    assert callable(_load(path).main)


def test_coded_sizes_runs(tmp_path, capsys):
    script = _load(EXPERIMENTS / "coded_sizes.py")
    rng = np.random.default_rng(0)
    for _, pattern, _ in script.SETS:  # one small image in each evaluation folder
        folder = tmp_path / Path(pattern).parent
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(folder / "a.png")
    script.main(["--data", str(tmp_path)])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "set | tile 128 | tile 256" and len(lines) == 1 + len(script.SETS)


def test_levels_lab_runs(tmp_path, capsys):
    """The levels' lab (entries 19-21) on one tiny image per folder it reads: every level's
    round trip checked, one line per set and level."""
    script = _load(EXPERIMENTS / "levels_lab.py")
    rng = np.random.default_rng(0)
    for folder, mode in (("wikipedia_photos", "RGB"), ("urban100_subset", "RGB"),
                         ("waterloo_bragzone/gray", "L"), ("usc_sipi", "L")):
        (tmp_path / folder).mkdir(parents=True)
        shape = (40, 48, 3) if mode == "RGB" else (40, 48)
        pixels = rng.integers(0, 256, shape, dtype=np.uint8)
        Image.fromarray(pixels).save(tmp_path / folder / "a.png")
    script.main(["--data", str(tmp_path)])
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in lines] == [
        f"{name:5s} level {lv}" for name in ("rgb", "gray") for lv in (0, 1, 2)]
    assert all("bpsp" in line for line in lines)


def test_table_shift_runs(tmp_path, capsys):
    """The table-shift probe (entry 22) on one tiny image per lab folder: a line per set, and no
    shift can cost more than sending it (shift 0 is among the choices)."""
    script = _load(EXPERIMENTS / "table_shift.py")
    rng = np.random.default_rng(1)
    for folder, shape in (("wikipedia_photos", (40, 48, 3)), ("waterloo_bragzone/gray", (40, 48))):
        (tmp_path / folder).mkdir(parents=True)
        pixels = rng.integers(0, 256, shape, dtype=np.uint8)
        Image.fromarray(pixels).save(tmp_path / folder / "a.png")
    script.main(["--data", str(tmp_path)])
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in lines] == ["rgb   level 4", "gray  level 4"]
    for line in lines:
        per_image = float(line.split("per-image shift ")[1].split("%")[0])
        assert per_image <= 0.0


def test_kernel_abba_runs(tmp_path, capsys):
    """The pixel-stage ABBA (entries 27-39) with this checkout as both builds, one round on two
    tiny images: one line per direction with both builds' times and their ratio."""
    script = _load(EXPERIMENTS / "kernel_abba.py")
    rng = np.random.default_rng(0)
    images = []
    for k in range(2):
        images.append(tmp_path / f"{k}.png")
        Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(images[-1])
    root = str(EXPERIMENTS.parent)
    script.main([root, root, "--rounds", "1", "--images", *map(str, images)])
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in lines] == ["fast enc", "fast dec"]
    assert all("B/A speed best" in line for line in lines)


def test_tile_choice_runs(tmp_path, capsys):
    """The tile-side probe (entry 40) on two tiny lab images, one RGB and one gray, of 6 tiles of
    256 (and one of 1 tile, outside --tiles): a line per image, then the totals."""
    script = _load(EXPERIMENTS / "tile_choice.py")
    rng = np.random.default_rng(2)
    for folder, shape in (("wikipedia_photos", (300, 520, 3)), ("usc_sipi", (300, 520)),
                          ("urban100_subset", (100, 100, 3))):  # fmt: skip
        (tmp_path / folder).mkdir(parents=True)
        pixels = rng.integers(0, 256, shape, dtype=np.uint8)
        Image.fromarray(pixels).save(tmp_path / folder / "a.png")
    script.main(["--data", str(tmp_path), "--tiles", "2", "31", "--rounds", "1", "--cpu", "-1"])
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in lines[:2]] == [
        "wikipedia_photos/a.png", "usc_sipi/a.png"]
    assert lines[2].startswith("level fast, 2 images with 2-31 tiles of 256: bytes 128/256")
    assert len(lines) == 3
    wide = rng.integers(0, 256, (128, 1024, 3), dtype=np.uint8)
    Image.fromarray(wide).save(tmp_path / "urban100_subset" / "a.png")  # the --occupancy photo
    script.main(["--data", str(tmp_path), "--occupancy", "--rounds", "1", "--cpu", "-1"])
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in lines] == [f"{n} tiles" for n in (1, 2, 3, 4, 6, 8)]


def test_pack_batches_runs(tmp_path, capsys):
    """The batch-packing probe (entry 42) on crops of one generated lab photo: one line with the
    four best times (every round trip checked inside)."""
    script = _load(EXPERIMENTS / "pack_batches.py")
    (tmp_path / "wikipedia_photos").mkdir()
    pixels = np.random.default_rng(3).integers(0, 256, (420, 520, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "wikipedia_photos" / "a.png")
    script.main(["--data", str(tmp_path), "--images", "3", "--batch", "2", "--rounds", "1",
                 "--cpu", "-1"])  # fmt: skip
    (line,) = capsys.readouterr().out.splitlines()
    assert line.startswith("level fast, 3 images")
    assert all(k in line for k in ("encode", "encode model pass", "decode", "decode model pass"))
