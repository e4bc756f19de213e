"""Folders, globs, shards and output names of a batch of inputs."""

import json
import random
import shutil
from pathlib import Path

from PIL import Image

from gradcam_cli.io.inputs import collect_inputs, in_shard

from helpers import SAMPLES, gradcam_here, jsonl, make_tree


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
    result = gradcam_here(
        "explain", src, "-r", "-o", out, "--jsonl", "--outputs", "heatmap,bbox", "-b", "8", "--device", "cpu"
    )
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
    assert sorted(json.dumps(r, sort_keys=True) for r in manifest) == sorted(
        json.dumps(r, sort_keys=True) for r in records
    )
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


def test_shards_cover_every_input_exactly_once(tmp_path):
    make_tree(tmp_path / "p", 24)
    items = collect_inputs([str(tmp_path / "p")], recursive=True)
    shards = [[i for i in items if in_shard(i, k, 3)] for k in range(3)]
    assert sorted(str(i.rel) for s in shards for i in s) == sorted(str(i.rel) for i in items)
    assert all(shards)
    shuffled = items[:]
    random.Random(1).shuffle(shuffled)
    assert [sorted(str(i.rel) for i in shuffled if in_shard(i, k, 3)) for k in range(3)] == [
        sorted(str(i.rel) for i in s) for s in shards
    ]


def test_same_stem_different_extension_do_not_collide(tmp_path):
    folder = tmp_path / "p"
    folder.mkdir()
    Image.open(SAMPLES / "cat.png").convert("RGB").resize((80, 60)).save(folder / "x.jpg")
    Image.open(SAMPLES / "samoyed.png").convert("RGB").resize((80, 60)).save(folder / "x.png")
    result = gradcam_here(
        "explain", folder, "-o", tmp_path / "out", "--jsonl", "--outputs", "heatmap", "--device", "cpu"
    )
    assert result.returncode == 0, result.stderr
    names = sorted(Path(r["files"]["heatmap"]).name.split("_")[0] for r in jsonl(result.stdout))
    assert names == ["x-jpg", "x-png"]
