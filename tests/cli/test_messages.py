"""What a run says on stderr: images left in sub-folders, warnings once each, what --fail-fast stopped, where CAM
was skipped."""

from __future__ import annotations

import re
import shutil

from PIL import Image

from helpers import SAMPLES, records, run


def test_a_folder_without_r_names_what_its_sub_folders_hold(tmp_path) -> None:
    mine = tmp_path / "mine"
    (mine / "sub" / "deeper").mkdir(parents=True)
    for name in ("cat.png", "dogs.png"):
        shutil.copy(SAMPLES / name, mine / "sub" / name)
    shutil.copy(SAMPLES / "bird.png", mine / "sub" / "deeper" / "bird.png")
    only_below = run("explain", mine, "-o", tmp_path / "out")
    assert only_below.exit_code == 2
    assert (
        "no input images found" in only_below.stderr and "3 images in sub-folders left out; add -r" in only_below.stderr
    )
    assert not (tmp_path / "out").exists()
    shutil.copy(SAMPLES / "samoyed.png", mine / "samoyed.png")
    top = run("explain", mine, "-o", tmp_path / "out", "--outputs", "heatmap")
    assert top.exit_code == 0
    assert f"gradcam: {mine}: 3 images in sub-folders left out; add -r to include them" in top.stderr
    assert "1 done, 0 skipped, 0 failed of 1" in top.stderr
    assert "left out" not in run("explain", mine, "-r", "-o", tmp_path / "all", "--outputs", "heatmap").stderr


def test_each_warning_is_said_once_on_stderr_and_quiet_silences_it(tmp_path) -> None:
    Image.new("RGB", (1, 1), (200, 30, 30)).save(tmp_path / "dot.png")
    result = run(
        "explain", tmp_path / "dot.png", "-o", tmp_path / "out", "--method", "gradcam,layercam", "--outputs", "heatmap"
    )
    assert result.exit_code == 0
    warnings = [line for line in result.stderr.splitlines() if line.startswith("gradcam: warning: ")]
    assert warnings and len(warnings) == len(set(warnings)), result.stderr
    assert any("dot.png: no box" in w for w in warnings) and "-" in result.stdout  # the table's empty box, explained
    quiet = run("explain", tmp_path / "dot.png", "-o", tmp_path / "q", "--outputs", "heatmap", "--quiet")
    assert quiet.exit_code == 0 and quiet.stderr == ""


def test_fail_fast_stops_taking_work_at_once_and_says_what_was_under_way(tmp_path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    photo = Image.open(SAMPLES / "cat.png").convert("RGB").resize((96, 64))
    for i in range(10):
        photo.save(folder / f"img{i}.png")
    (folder / "img3.png").write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    result = run(
        "explain", folder, "-o", tmp_path / "out", "--fail-fast", "--json", "--outputs", "heatmap", "--batch-size", "2"
    )
    assert result.exit_code == 1
    done = [r["input"] for r in records(result) if "error" not in r]
    failed = [r["input"] for r in records(result) if "error" in r]
    assert failed == [str(folder / "img3.png")]
    assert done == [str(folder / f"img{i}.png") for i in range(2)]  # the batch holding img3 never ran
    lines = result.stderr.splitlines()
    stop = next(line for line in lines if line.startswith("gradcam: --fail-fast: stopped at the first failure"))
    assert "img3.png" in stop and re.search(r"; 7 not started$", stop), stop
    assert "2 done, 0 skipped, 1 failed of 10 (stopped at first failure)" in lines[-1]


def test_fail_fast_after_a_write_failure_finishes_what_was_under_way(tmp_path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    photo = Image.open(SAMPLES / "cat.png").convert("RGB").resize((96, 64))
    for i in range(8):
        photo.save(folder / f"img{i}.png")
    out = tmp_path / "out"
    out.mkdir()
    (out / "img2_gradcam_bn2_c285_heatmap.png").write_bytes(b"earlier")  # img2's output exists: it fails
    result = run("explain", folder, "-o", out, "--fail-fast", "--json", "--outputs", "heatmap", "--class", "285")
    assert result.exit_code == 1
    outcome = [(r["input"].rsplit("/", 1)[-1], "error" in r) for r in records(result)]
    assert outcome[:3] == [("img0.png", False), ("img1.png", False), ("img2.png", True)]
    stop = next(line for line in result.stderr.splitlines() if "--fail-fast: stopped" in line)
    under_way = len(outcome) - 3
    assert under_way <= 4  # at most the batches already decoded and explained when the failure was known
    assert f"; {8 - len(outcome)} not started" in stop


def test_cam_runs_where_its_head_follows_the_layer_and_says_where_it_was_skipped(tmp_path) -> None:
    result = run(
        "explain",
        SAMPLES / "cat.png",
        "-o",
        tmp_path / "out",
        "--json",
        "--outputs",
        "heatmap",
        "--method",
        "cam,gradcam",
        "--layer",
        "stages,bn2",
    )
    assert result.exit_code == 0, result.output
    found = records(result)
    cam_layers = {r["layer"] for r in found if r["method"] == "cam"}
    gradcam_layers = {r["layer"] for r in found if r["method"] == "gradcam"}
    assert cam_layers == {"bn2"} and len(gradcam_layers) > 1  # GAP -> linear follows bn2 only
    skipped = [line for line in result.stderr.splitlines() if line.endswith("skipped at that layer")]
    assert len(skipped) == len(gradcam_layers) - 1
    assert all(line.startswith("gradcam: --method cam: layer 'blocks.") for line in skipped), skipped
    refused = run("explain", SAMPLES / "cat.png", "-o", tmp_path / "r", "--method", "cam", "--layer", "blocks.5")
    assert refused.exit_code == 2 and "--method cam" in refused.stderr
