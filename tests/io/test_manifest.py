"""results.jsonl: no record is ever lost — to a killed run, a second run into the folder, a line separator in a
name, or a symbolic link — and nothing is written through a link."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from gradcam_cli.io.manifest import Manifest, journal_path, read_records

from helpers import SAMPLES, gradcam, jsonl, run

# Every character str.splitlines() splits at, besides \n (JSON escapes \n, \r, \x0b, \x0c and \x1c-\x1e inside
# strings, but writes U+0085, U+2028 and U+2029 as they are).
SEPARATORS = ["\r", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029"]


def photos(folder: Path, names, size=(64, 48)) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    base = Image.open(SAMPLES / "samoyed.png").convert("RGB").resize(size)
    for name in names:
        base.save(folder / name)
    return folder


def inputs_of(manifest: Path) -> list[str]:
    """The inputs a manifest has records of, each once."""
    return sorted({Path(r["input"]).name for r in jsonl(manifest.read_text(encoding="utf-8"))})


@pytest.mark.parametrize("separator", SEPARATORS)
def test_a_line_separator_in_a_name_loses_no_record(tmp_path, separator) -> None:
    names = [f"a{separator}b.png", "plain.png"]
    folder = photos(tmp_path / "in", names)
    out = tmp_path / "out"
    first = run("explain", folder, "-o", out, "--outputs", "heatmap")
    assert first.exit_code == 0, first.output
    assert inputs_of(out / "results.jsonl") == sorted(names)
    again = run("explain", folder / "plain.png", "-o", out, "--outputs", "heatmap", "--overwrite")
    assert again.exit_code == 0, again.output
    assert inputs_of(out / "results.jsonl") == sorted(names)  # the other run's record is still there
    assert sorted(Path(r["input"]).name for r in read_records(out / "results.jsonl")) == sorted(names)


def test_a_killed_runs_finished_images_keep_their_records(tmp_path) -> None:
    """kill -9 after 3 of 8 images, then --skip-existing: all 8 in the manifest, and in the report."""
    folder = photos(tmp_path / "in", [f"img{i}.png" for i in range(8)], size=(320, 240))
    out = tmp_path / "out"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "GRADCAM_THREADS": "1"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gradcam_cli",
            "explain",
            str(folder),
            "-o",
            str(out),
            "--json",
            "--outputs",
            "heatmap,overlay",
            "--workers",
            "0",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    seen = [proc.stdout.readline() for _ in range(3)]
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    finished = {Path(json.loads(line)["input"]).name for line in seen}
    assert len(finished) == 3
    journal = journal_path(out / "results.jsonl")
    assert journal.exists() and finished <= {Path(r["input"]).name for r in jsonl(journal.read_text())}
    resumed = gradcam("explain", folder, "-o", out, "--outputs", "heatmap,overlay", "--skip-existing")
    assert resumed.returncode == 0, resumed.stderr
    skipped = int(resumed.stderr.split(" skipped")[0].rsplit(", ", 1)[-1])
    assert skipped >= 3 and f"{8 - skipped} done, {skipped} skipped, 0 failed of 8" in resumed.stderr
    assert inputs_of(out / "results.jsonl") == [f"img{i}.png" for i in range(8)]
    assert not journal.exists()
    report = gradcam("report", out)
    assert report.returncode == 0 and ": 8 images, 8 results, 0 failed" in report.stderr, report.stderr


def test_a_second_run_into_the_same_folder_is_refused_while_the_first_runs(tmp_path) -> None:
    folder = photos(tmp_path / "in", [f"img{i}.png" for i in range(6)], size=(320, 240))
    out = tmp_path / "out"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "GRADCAM_THREADS": "1"}
    # 6 images x 30 classes of records fill the pipe's buffer: unread, the run blocks while it holds the folder.
    first = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gradcam_cli",
            "explain",
            str(folder),
            "-o",
            str(out),
            "--json",
            "--workers",
            "0",
            "--overwrite",
            "--top-k",
            "30",
            "--outputs",
            "heatmap",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    first.stdout.readline()  # the first image is done: the run holds the folder
    second = gradcam("explain", folder, "-o", out, "--overwrite")
    assert second.returncode == 2 and "another gradcam run (pid" in second.stderr, second.stderr
    assert len(second.stderr.strip().splitlines()) == 1
    shard = gradcam("explain", folder, "-o", out, "--shard", "0/2", "--outputs", "heatmap", "--overwrite")
    assert shard.returncode == 0, shard.stderr  # a shard has a manifest of its own: it may share the folder
    rest, _ = first.communicate(timeout=600)
    assert first.returncode == 0
    assert inputs_of(out / "results.jsonl") == [f"img{i}.png" for i in range(6)]  # nothing lost
    assert not list(out.glob(".results*.lock"))  # released, and removed
    again = gradcam("explain", folder / "img0.png", "-o", out, "--overwrite", "--outputs", "heatmap")
    assert again.returncode == 0, again.stderr  # the folder is free again


def test_a_lock_left_by_a_killed_run_does_not_block_the_next(tmp_path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / ".results.jsonl.lock").write_text("pid 999999")  # a file, but no process holds its lock
    result = run("explain", SAMPLES / "cat.png", "-o", out, "--outputs", "heatmap")
    assert result.exit_code == 0, result.output


def test_a_linked_manifest_is_refused_and_its_target_untouched(tmp_path) -> None:
    elsewhere = tmp_path / "elsewhere.jsonl"
    elsewhere.write_text('{"input": "secret.png", "error": "x"}\n')
    out = tmp_path / "out"
    out.mkdir()
    (out / "results.jsonl").symlink_to(elsewhere)
    result = run("explain", SAMPLES / "cat.png", "-o", out, "--outputs", "heatmap")
    assert result.exit_code == 2 and "results.jsonl: is a symbolic link" in result.stderr, result.output
    assert elsewhere.read_text() == '{"input": "secret.png", "error": "x"}\n'
    assert not list(out.glob("cat*"))


def test_outputs_are_never_written_through_a_linked_folder(tmp_path) -> None:
    folder = tmp_path / "in"
    photos(folder / "sub", ["a.png"])
    photos(folder, ["top.png"])
    target = tmp_path / "target"
    target.mkdir()
    out = tmp_path / "out"
    out.mkdir()
    (out / "sub").symlink_to(target, target_is_directory=True)
    result = run("explain", folder, "-r", "-o", out, "--outputs", "heatmap", "--json")
    assert result.exit_code == 1
    failed = [r for r in jsonl(result.stdout) if "error" in r]
    assert len(failed) == 1 and "is a symbolic link" in failed[0]["error"] and failed[0]["input"].endswith("a.png")
    assert list(target.iterdir()) == [] and list(out.glob("top_*"))  # nothing went through; the rest was done


def test_run_json_is_not_rewritten_when_the_manifest_cannot_be_written(tmp_path) -> None:
    out = tmp_path / "out"
    (out / "results.jsonl").mkdir(parents=True)  # a folder where the manifest should be
    (out / "run.json").write_text('{"model": "earlier"}')
    result = run("explain", SAMPLES / "cat.png", "-o", out, "--outputs", "heatmap")
    assert result.exit_code == 2 and "results.jsonl" in result.stderr, result.output
    assert (out / "run.json").read_text() == '{"model": "earlier"}' and not list(out.glob("cat*"))


def test_the_journal_is_folded_in_whatever_the_next_run(tmp_path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    path = out / "results.jsonl"
    path.write_text('{"input": "a.png", "error": "a.png: earlier failure"}\n')
    journal_path(path).write_text(
        '{"input": "a.png", "layer": "x"}\n{"input": "b.png", "layer": "y"}\n{"input": "c.png", "lay'
    )  # cut short by the kill
    manifest = Manifest(path).open()
    manifest.close()
    assert jsonl(path.read_text()) == [{"input": "a.png", "layer": "x"}, {"input": "b.png", "layer": "y"}]
    assert not journal_path(path).exists()


def test_a_failure_never_replaces_good_records_from_the_journal(tmp_path) -> None:
    path = tmp_path / "results.jsonl"
    path.write_text('{"input": "a.png", "layer": "x"}\n')
    journal_path(path).write_text('{"input": "a.png", "error": "a.png: failed later"}\n')
    assert read_records(path) == [{"input": "a.png", "layer": "x"}]
