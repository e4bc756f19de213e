"""Folder runs in a pipeline: early exit of the reader, shards, interrupts and resumes, fail-fast."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from PIL import Image

from helpers import SAMPLES, gradcam_here, jsonl, make_tree

GRADCAM = str(Path(sys.executable).with_name("gradcam"))


ENV = dict(os.environ, HF_HUB_OFFLINE="1")


def gradcam(*args, **kw):
    return subprocess.run([GRADCAM, *map(str, args)], capture_output=True, text=True, env=ENV, **kw)


def test_find_print0_into_head_exits_cleanly(tmp_path):
    make_tree(tmp_path / "p", 12)
    cmd = (
        f"set -o pipefail; find {tmp_path / 'p'} -name '*.jpg' -print0 | "
        f"{GRADCAM} explain -0 - --jsonl -o {tmp_path / 'out'} --outputs heatmap --device cpu | head -n 1"
    )
    result = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, env=ENV)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 1
    rec = json.loads(lines[0])
    assert rec["input"].endswith(".jpg") and "class_index" in rec
    assert "Traceback" not in result.stderr and "BrokenPipe" not in result.stderr


def test_shard_runs_split_a_folder_without_overlap(tmp_path):
    make_tree(tmp_path / "p", 9)
    out = tmp_path / "out"
    seen = []
    for k in range(3):
        result = gradcam_here(
            "explain",
            tmp_path / "p",
            "-r",
            "-o",
            out,
            "--shard",
            f"{k}/3",
            "--outputs",
            "heatmap",
            "--quiet",
            "--device",
            "cpu",
        )
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
    result = gradcam_here(
        "explain",
        tmp_path / "p",
        "-o",
        tmp_path / "out",
        "--jsonl",
        "--fail-fast",
        "-b",
        "1",
        "--workers",
        "0",
        "--outputs",
        "heatmap",
        "--device",
        "cpu",
    )
    assert result.returncode == 1
    assert len(jsonl(result.stdout)) < 3  # the broken file sorts first among the top-level inputs


def test_overwrite_and_skip_existing_conflict(tmp_path):
    result = gradcam_here("explain", SAMPLES / "cat.png", "-o", tmp_path, "--overwrite", "--skip-existing")
    assert result.returncode == 2 and "conflict" in result.stderr
