"""Folders, pipelines and jobs: every image ends as outputs or as an error record."""

import json
import os
import random
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from gradcam_cli.io.inputs import collect_inputs, in_shard
from helpers import gradcam_here

SAMPLES = Path(__file__).resolve().parents[1] / "sample_images"
GRADCAM = str(Path(sys.executable).with_name("gradcam"))
ENV = dict(os.environ, HF_HUB_OFFLINE="1")


def _photos():
    return [Image.open(p).convert("RGB") for p in sorted(SAMPLES.glob("*.png"))] + \
        [Image.open(SAMPLES / "hot_dog.jpg").convert("RGB")]


def make_tree(root: Path, n: int, size=(96, 72)) -> list[Path]:
    """n small photos in nested folders; every third folder reuses the same file names."""
    photos = _photos()
    paths = []
    for i in range(n):
        folder = root / f"set{i % 4}" / ("deep" if i % 3 == 0 else "")
        folder.mkdir(parents=True, exist_ok=True)
        p = folder / f"img{i // 4:02d}.jpg"
        photos[i % len(photos)].resize(size).save(p, quality=90)
        paths.append(p)
    return paths


def gradcam(*args, **kw):
    return subprocess.run([GRADCAM, *map(str, args)], capture_output=True, text=True, env=ENV, **kw)


def jsonl(text):
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_folder_tree_with_corrupt_files_and_a_non_image(tmp_path):
    src = tmp_path / "photos"
    paths = make_tree(src, 36)
    jpeg = paths[0].read_bytes()
    (src / "set1" / "truncated.jpg").write_bytes(jpeg[: len(jpeg) // 3])
    (src / "set2" / "deep").mkdir(parents=True, exist_ok=True)
    (src / "set2" / "deep" / "zero.png").write_bytes(b"")
    (src / "set3" / "badcrc.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + b"\x01" * 17)
    (src / "set0" / "notes.jpg").write_text("this is not a photo")
    (src / "README.txt").write_text("ignored: not an image")
    (src / ".hidden.jpg").write_bytes(jpeg)
    out = tmp_path / "out"
    result = gradcam_here("explain", src, "-r", "-o", out, "--jsonl", "--outputs", "heatmap,bbox", "-b", "8",
                          "--device", "cpu")
    assert result.returncode == 1, result.stderr
    records = jsonl(result.stdout)
    errors = [r for r in records if "error" in r]
    ok = [r for r in records if "error" not in r]
    assert len(ok) == 36 and len(errors) == 4
    assert {Path(r["input"]).name for r in errors} == {"truncated.jpg", "zero.png", "badcrc.png", "notes.jpg"}
    for r in errors:
        assert r["input"] in r["error"] and "\n" not in r["error"]
    # Outputs mirror the tree: same file names in different folders never collide.
    written = [Path(f) for r in ok for f in r["files"].values()]
    assert len(written) == len(set(written)) == 72
    for r in ok:
        rel = Path(r["input"]).relative_to(src)
        assert Path(r["files"]["heatmap"]).parent == out / rel.parent
    manifest = jsonl((out / "results.jsonl").read_text())
    assert sorted(json.dumps(r, sort_keys=True) for r in manifest) == sorted(json.dumps(r, sort_keys=True) for r in records)
    # One-line errors on stderr and a summary line.
    assert "36 done, 0 skipped, 4 failed of 40" in result.stderr
    assert "Traceback" not in result.stderr


def test_non_recursive_folder_reads_only_top_level(tmp_path):
    make_tree(tmp_path / "p", 8)
    assert collect_inputs([str(tmp_path / "p")]) == []
    items = collect_inputs([str(tmp_path / "p")], recursive=True)
    assert len(items) == 8


def test_single_file_goes_straight_to_output_dir_and_globs(tmp_path):
    make_tree(tmp_path / "p", 8)
    [one] = collect_inputs([str(tmp_path / "p" / "set1" / "img00.jpg")])
    assert str(one.rel) == "img00.jpg"
    matched = collect_inputs([str(tmp_path / "p" / "**" / "*.jpg")], recursive=True)
    assert len(matched) == 8 and len({m.rel for m in matched}) == 8


def test_output_dir_inside_input_is_skipped(tmp_path):
    make_tree(tmp_path, 4)
    (tmp_path / "out").mkdir()
    shutil.copy(SAMPLES / "cat.png", tmp_path / "out" / "old.png")
    items = collect_inputs([str(tmp_path)], recursive=True, output_dir=tmp_path / "out")
    assert all("out" not in i.rel.parts for i in items) and len(items) == 4


def test_find_print0_into_head_exits_cleanly(tmp_path):
    make_tree(tmp_path / "p", 12)
    cmd = (f"set -o pipefail; find {tmp_path / 'p'} -name '*.jpg' -print0 | "
           f"{GRADCAM} explain -0 - --jsonl -o {tmp_path / 'out'} --outputs heatmap --device cpu | head -n 1")
    result = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, env=ENV)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 1
    rec = json.loads(lines[0])
    assert rec["input"].endswith(".jpg") and "class_index" in rec
    assert "Traceback" not in result.stderr and "BrokenPipe" not in result.stderr


def test_shards_cover_every_input_exactly_once(tmp_path):
    make_tree(tmp_path / "p", 24)
    items = collect_inputs([str(tmp_path / "p")], recursive=True)
    shards = [[i for i in items if in_shard(i, k, 3)] for k in range(3)]
    assert sorted(str(i.rel) for s in shards for i in s) == sorted(str(i.rel) for i in items)
    assert all(shards)
    shuffled = items[:]
    random.Random(1).shuffle(shuffled)
    assert [sorted(str(i.rel) for i in shuffled if in_shard(i, k, 3)) for k in range(3)] == \
        [sorted(str(i.rel) for i in s) for s in shards]


def test_shard_runs_split_a_folder_without_overlap(tmp_path):
    make_tree(tmp_path / "p", 9)
    out = tmp_path / "out"
    seen = []
    for k in range(3):
        result = gradcam_here("explain", tmp_path / "p", "-r", "-o", out, "--shard", f"{k}/3", "--outputs", "heatmap",
                              "--quiet", "--device", "cpu")
        assert result.returncode == 0, result.stderr
        seen += [r["input"] for r in jsonl((out / f"results.{k}-of-3.jsonl").read_text())]
    assert len(seen) == len(set(seen)) == 9
    assert gradcam_here("explain", tmp_path / "p", "-o", out, "--shard", "3/3").returncode == 2


def test_sigint_mid_run_then_skip_existing_finishes_the_rest(tmp_path):
    make_tree(tmp_path / "p", 30, size=(160, 120))
    out = tmp_path / "out"
    args = [GRADCAM, "explain", str(tmp_path / "p"), "-r", "-o", str(out), "--jsonl", "--device", "cpu", "-b", "1"]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    first = []
    for line in proc.stdout:
        first.append(json.loads(line))
        if len(first) == 10:
            proc.send_signal(signal.SIGINT)
            break
    rest, err = proc.communicate(timeout=120)
    first += jsonl(rest)
    assert proc.returncode == 130, err
    assert "interrupted" in err
    assert 10 <= len(first) < 30
    files = [p for p in out.rglob("*") if p.is_file()]
    assert not [p for p in files if p.name.startswith(".") or p.suffix == ".tmp"], "temporary files left behind"
    for p in files:
        if p.suffix == ".png":
            with Image.open(p) as img:
                img.load()
    manifest = jsonl((out / "results.jsonl").read_text())
    assert len(manifest) == len(first)
    again = subprocess.run(args + ["--skip-existing"], capture_output=True, text=True, env=ENV)
    assert again.returncode == 0, again.stderr
    second = jsonl(again.stdout)
    assert len(second) == 30 - len(first)
    assert {r["input"] for r in first}.isdisjoint({r["input"] for r in second})
    assert f"{len(second)} done, {len(first)} skipped, 0 failed of 30" in again.stderr
    assert len(jsonl((out / "results.jsonl").read_text())) == 30


def test_fail_fast_stops_early(tmp_path):
    make_tree(tmp_path / "p", 6)
    (tmp_path / "p" / "aaa.jpg").write_text("broken")
    result = gradcam_here("explain", tmp_path / "p", "-o", tmp_path / "out", "--jsonl", "--fail-fast", "-b", "1",
                          "--workers", "0", "--outputs", "heatmap", "--device", "cpu")
    assert result.returncode == 1
    assert len(jsonl(result.stdout)) < 3  # the broken file sorts first among the top-level inputs


def test_overwrite_and_skip_existing_conflict(tmp_path):
    result = gradcam_here("explain", SAMPLES / "cat.png", "-o", tmp_path, "--overwrite", "--skip-existing")
    assert result.returncode == 2 and "conflict" in result.stderr


@pytest.mark.parametrize("mode", ["L", "P", "RGBA", "I;16", "CMYK", "LA"])
def test_any_mode_becomes_rgb(tmp_path, mode):
    from gradcam_cli.io.images import load_rgb

    src = Image.open(SAMPLES / "samoyed.png").convert("RGB")
    if mode == "I;16":
        import numpy as np

        arr = (np.asarray(src.convert("L"), dtype=np.uint16) * 257)
        img = Image.fromarray(arr)
        assert img.mode.startswith("I;16")
    else:
        img = src.convert(mode)
    path = tmp_path / ("x.jpg" if mode == "CMYK" else "x.png")
    img.save(path)
    arr = load_rgb(path)
    assert arr.shape == (src.height, src.width, 3) and arr.dtype.name == "uint8"
    assert arr.mean() > 20  # not black: values were rescaled, transparency composited


def test_formats_and_exif_orientation(tmp_path):
    from gradcam_cli.io.images import load_rgb

    src = Image.open(SAMPLES / "samoyed.png").convert("RGB").resize((120, 80))
    for ext in ("webp", "bmp", "tiff", "gif"):
        path = tmp_path / f"x.{ext}"
        src.save(path)
        assert load_rgb(path).shape == (80, 120, 3), ext
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise on display
    path = tmp_path / "rotated.jpg"
    src.save(path, exif=exif)
    assert load_rgb(path).shape == (120, 80, 3)


def test_same_stem_different_extension_do_not_collide(tmp_path):
    folder = tmp_path / "p"
    folder.mkdir()
    Image.open(SAMPLES / "cat.png").convert("RGB").resize((80, 60)).save(folder / "x.jpg")
    Image.open(SAMPLES / "samoyed.png").convert("RGB").resize((80, 60)).save(folder / "x.png")
    result = gradcam_here("explain", folder, "-o", tmp_path / "out", "--jsonl", "--outputs", "heatmap",
                          "--device", "cpu")
    assert result.returncode == 0, result.stderr
    names = sorted(Path(r["files"]["heatmap"]).name.split("_")[0] for r in jsonl(result.stdout))
    assert names == ["x-jpg", "x-png"]
