"""Output folders that cannot be made or written, paths that would climb out, write faults mid-run."""

import errno
import io
import json
import os
from pathlib import Path, PurePosixPath

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from helpers import assert_usage_error, one_line, records, refuse_access, run, samoyed_photo


def test_output_dir_that_cannot_be_created(tmp_path, cat):
    afile = tmp_path / "regular_file"
    afile.write_text("x")
    assert_usage_error(run("explain", cat, "-o", afile / "sub"), "--output-dir")
    assert_usage_error(run("explain", cat, "-o", afile), "--output-dir")
    assert afile.read_text() == "x"


def test_output_dir_that_cannot_be_written(tmp_path, cat, monkeypatch):
    out = tmp_path / "readonly"
    out.mkdir()
    refuse_access(monkeypatch, out, os.W_OK)  # chmod 555: readable, not writable (root ignores real modes)
    assert_usage_error(run("explain", cat, "-o", out), "not a writable directory", out)


def test_stdin_paths_with_dotdot_and_absolute_paths_stay_inside_output_dir(tmp_path, monkeypatch):
    cwd = tmp_path / "a" / "b"
    (cwd / "sub").mkdir(parents=True)
    monkeypatch.chdir(cwd)
    photo = samoyed_photo((48, 32))
    for p in (
        tmp_path / "top.jpg",
        tmp_path / "a" / "mid.jpg",
        tmp_path / "elsewhere" / "abs.jpg",
        cwd / "sub" / "here.jpg",
    ):
        p.parent.mkdir(parents=True, exist_ok=True)
        photo.save(p)
    listed = [
        "sub/../../../top.jpg",
        "../mid.jpg",
        str(tmp_path / "elsewhere" / "abs.jpg"),
        "/../../" + str(tmp_path / "elsewhere" / "abs.jpg").lstrip("/"),
        "./sub/here.jpg",
        "sub/./../sub/here.jpg",
    ]
    out = cwd / "out"
    result = run(
        "explain",
        "-",
        "-o",
        "out",
        "--json",
        "--outputs",
        "heatmap,bbox",
        "--save-raw",
        "--device",
        "cpu",
        input="\n".join(listed) + "\n",
    )
    assert result.exit_code == 0, result.output
    written = [
        p
        for p in tmp_path.rglob("*")
        if p.is_file() and p.suffix in (".png", ".npy", ".jsonl") and p.parent != tmp_path / "elsewhere"
    ]
    assert len(written) == 4 * 3 + 1  # 4 distinct images x (heatmap, bbox, map) + results.jsonl
    root = out.resolve()
    for p in written:
        assert p.resolve().is_relative_to(root), p
    for r in records(result):
        for f in r["files"].values():
            assert Path(f).resolve().is_relative_to(root)


SEGMENTS = st.sampled_from(["..", ".", "", "a", "b c", "ü", "-x", "C:", "\\", "..\\..", "~"])


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.lists(SEGMENTS, min_size=1, max_size=8).map(lambda s: "/".join(s) + "/img.jpg"), min_size=1, max_size=4
    ),
    st.booleans(),
)
def test_collected_output_locations_never_climb_out(paths, absolute):
    from gradcam_cli.io.inputs import collect_inputs

    args = ["/" + p if absolute else p for p in paths]
    items = collect_inputs(["-"], stdin=io.BytesIO("\n".join(args).encode()))
    for item in items:
        assert not item.rel.is_absolute() and ".." not in item.rel.parts, item
        joined = os.path.normpath(os.path.join("/out", str(item.rel)))
        assert joined.startswith("/out/"), (item, joined)
        assert isinstance(item.rel, PurePosixPath)


@pytest.fixture
def three_photos(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("a.jpg", "b.jpg", "c.jpg"):
        samoyed_photo((64, 48)).save(folder / name)
    return folder


def _leftovers(out: Path) -> list[str]:
    return [p.name for p in out.rglob("*") if p.name.startswith(".") or p.suffix == ".tmp"]


@pytest.mark.parametrize("fault", ["disk_full_on_rename", "permission_lost_on_write"])
def test_write_fault_fails_one_image_and_leaves_no_partial_files(tmp_path, three_photos, monkeypatch, fault):
    import gradcam_cli.output.files as outputs

    if fault == "disk_full_on_rename":
        real_replace = os.replace

        def replace(src, dst, *args, **kwargs):
            if Path(dst).name.startswith("b_") and Path(dst).name.endswith("_bbox.png"):  # b's 2nd file
                raise OSError(errno.ENOSPC, "No space left on device", str(dst))
            return real_replace(src, dst, *args, **kwargs)

        monkeypatch.setattr(os, "replace", replace)
        cause = "No space left on device"
    else:
        real_write = outputs.write_bytes_atomic

        def write(path, data):
            if Path(path).name.startswith("b_"):
                raise PermissionError(errno.EACCES, "Permission denied", str(path))
            return real_write(path, data)

        monkeypatch.setattr(outputs, "write_bytes_atomic", write)
        cause = "Permission denied"
    out = tmp_path / "out"
    result = run(
        "explain", three_photos, "-o", out, "--json", "--outputs", "heatmap,bbox", "-b", "1", "--device", "cpu"
    )
    assert result.exit_code == 1, result.output
    recs = records(result)
    [err] = [r for r in recs if "error" in r]
    assert err["input"].endswith("b.jpg") and cause in err["error"] and one_line(err["error"])
    assert err["error"].startswith(err["input"] + ": ")
    names = sorted(p.name for p in out.iterdir())
    assert not [n for n in names if n.startswith("b_")], names
    assert _leftovers(out) == []
    assert len([n for n in names if n.startswith(("a_", "c_"))]) == 4
    for name in names:
        if name.endswith(".png"):
            with Image.open(out / name) as img:
                img.load()
    manifest = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert sorted(Path(r["input"]).name for r in manifest) == ["a.jpg", "b.jpg", "c.jpg"]
    assert "Traceback" not in result.output


def test_manifest_write_fault_is_one_line_not_a_traceback(tmp_path, three_photos, monkeypatch):
    real_replace = os.replace

    def replace(src, dst, *args, **kwargs):
        if Path(dst).name == "results.jsonl":
            raise OSError(errno.ENOSPC, "No space left on device", str(dst))
        return real_replace(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", replace)
    out = tmp_path / "out"
    result = run("explain", three_photos, "-o", out, "--outputs", "heatmap", "--device", "cpu")
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.exit_code == 1
    assert "results.jsonl" in result.stderr and "No space left on device" in result.stderr
    # No partial file; the records that could not reach the manifest are kept in its journal, and the
    # next run folds them in: none is lost.
    assert _leftovers(out) == [".results.jsonl.journal"]
    journal = [json.loads(line) for line in (out / ".results.jsonl.journal").read_text().splitlines()]
    assert sorted(Path(r["input"]).name for r in journal) == ["a.jpg", "b.jpg", "c.jpg"]
    monkeypatch.setattr(os, "replace", real_replace)
    again = run("explain", three_photos, "-o", out, "--outputs", "heatmap", "--device", "cpu", "--skip-existing")
    assert again.exit_code == 0 and "0 done, 3 skipped" in again.stderr, again.stderr
    manifest = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert sorted(Path(r["input"]).name for r in manifest) == ["a.jpg", "b.jpg", "c.jpg"]
    assert _leftovers(out) == []
